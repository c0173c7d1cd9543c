"""The compose stack hangs together: files it mounts exist, every DEDUP_* it sets is a real setting, every
variable it needs from .env is in .env.example. (No Docker engine here: structure only.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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
