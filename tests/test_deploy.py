"""The deployment files hang together: files compose mounts exist, every DEDUP_* it sets is a real setting, every
variable it needs from .env is in .env.example, Prometheus, Grafana and the rules agree on names, and the
Kubernetes manifests validate against Kubernetes' schemas (kubernetes-validate, offline).

No Docker engine and no compose plugin on these machines (``docker compose config`` cannot run), no cluster:
structure only. The rules and the dashboard run against live services in ``tests/test_observability.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import yaml

from worker.config import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_the_stack_has_every_service() -> None:
    expected = {"minio", "minio-init", "redis", "milvus", "producer", "worker", "worker-gpu", "prometheus", "grafana"}
    assert expected <= set(compose()["services"])


def test_every_mounted_or_built_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_every_dedup_variable_is_a_setting() -> None:
    known = {env_name(field) for field in Settings.model_fields}
    used = set(re.findall(r"\b(DEDUP_[A-Z0-9_]+)\s*:", (ROOT / "docker-compose.yml").read_text()))
    assert used
    assert used <= known, used - known


def test_every_variable_compose_reads_is_in_env_example() -> None:
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    example = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    assert needed <= example, needed - example


def test_prometheus_scrapes_the_metrics_port_compose_sets() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    ports = {sd["port"] for job in config["scrape_configs"] for sd in job["dns_sd_configs"]}
    assert ports == {int(compose()["x-dedup-env"]["DEDUP_METRICS_PORT"])}


# Prometheus and Grafana -----------------------------------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return document


def test_prometheus_jobs_are_the_ones_the_rules_dashboard_and_tests_use() -> None:
    # alerts.yml selects job="worker" / job="webhook"; tests/deployment.py scrapes under the same names.
    assert {job["job_name"] for job in prometheus_config()["scrape_configs"]} == {"worker", "webhook"}
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert set(re.findall(r'job="(\w+)"', rules)) == {"worker", "webhook"}


def test_compose_mounts_every_rule_file_next_to_the_config() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    config_target = mounts["./deploy/prometheus/prometheus.yml"]
    for rule_file in prometheus_config()["rule_files"]:
        assert mounts[f"./deploy/prometheus/{rule_file}"] == str(Path(config_target).parent / rule_file)


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_the_datasource_they_use() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "dedup.yml").read_text())["providers"]
    assert provider["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "image-dedup.json").read_text())
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {source["uid"]}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("duplicate rate", "latency", "batch size", "errors", "queue depth", "index"):
        assert topic in titles


def test_every_healthy_condition_waits_on_a_service_with_a_health_check() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):  # the short form: started, not healthy
            depends = {key: {} for key in depends}
        for dependency, condition in depends.items():
            assert dependency in services, f"{name} → {dependency}"
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health"


def test_every_named_volume_is_declared() -> None:
    document = compose()
    for name, service in document["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("./", "/")):
                assert source in document["volumes"], f"{name}: {source}"


# Kubernetes -------------------------------------------------------------------------------------------------


K8S = ROOT / "deploy" / "k8s"


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas() -> None:
    checked = 0
    for document in manifests():
        if document["kind"] in {"Kustomization", "ScaledObject"}:  # not core APIs: no schema to check against
            continue
        kubernetes_validate.validate(document, "1.30.0", strict=True)
        checked += 1
    assert checked >= 6


def test_kustomization_lists_the_manifests_but_no_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    examples = {p.name for p in K8S.glob("*.example.yaml")}  # a Secret, the device plugin's GPU sharing
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", *examples}


def test_kubernetes_env_names_are_settings() -> None:
    known = {env_name(field) for field in Settings.model_fields}
    names = set(manifest("ConfigMap", "image-dedup-config")["data"])
    names |= set(manifest("Secret", "image-dedup-secrets")["stringData"])
    for deployment in ("image-dedup-worker", "image-dedup-producer"):
        for container in manifest("Deployment", deployment)["spec"]["template"]["spec"]["containers"]:
            names |= {env["name"] for env in container.get("env", [])}
    assert names <= known, names - known


def test_the_worker_requests_a_gpu_and_keda_scales_it_on_the_queue_list() -> None:
    worker = manifest("Deployment", "image-dedup-worker")
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    scaled = manifest("ScaledObject", "image-dedup-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    config = manifest("ConfigMap", "image-dedup-config")["data"]
    assert trigger["metadata"]["listName"] == config["DEDUP_QUEUE"]
    broker = urlsplit(config["DEDUP_BROKER_URL"])
    assert trigger["metadata"]["address"] == broker.netloc
    assert trigger["metadata"]["databaseIndex"] == broker.path.strip("/")


def test_the_producer_service_exposes_the_container_ports() -> None:
    producer = manifest("Deployment", "image-dedup-producer")
    service = manifest("Service", "image-dedup-producer")
    labels = producer["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [container] = producer["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    config = manifest("ConfigMap", "image-dedup-config")["data"]
    assert ports == {"http": int(config["DEDUP_WEBHOOK_PORT"]), "metrics": int(config["DEDUP_METRICS_PORT"])}
    assert {port["targetPort"] for port in service["spec"]["ports"]} == set(ports)


def test_the_gpu_profile_runs_several_worker_processes_on_one_gpu() -> None:
    gpu = compose()["services"]["worker-gpu"]
    assert gpu["deploy"]["replicas"] == "${WORKERS_PER_GPU:-4}"
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["device_ids"] == ["${GPU_DEVICE:-0}"]  # every replica on the same GPU
    assert gpu["environment"]["DEDUP_DEVICE"] == "cuda"
    sharing = yaml.safe_load((K8S / "gpu-sharing.example.yaml").read_text())
    config = yaml.safe_load(sharing["data"]["config.yaml"])
    assert config["sharing"]["mps"]["resources"][0] == {"name": "nvidia.com/gpu", "replicas": 4}
