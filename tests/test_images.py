"""Static checks on the images the stack runs — the checks that would have caught issue 20 (MinIO pinned to
images Docker Hub no longer serves, from a release before a CVE fix, and a Milvus server the SDK is not made for).

No Docker engine here: docker-compose.yml and deploy/ are parsed, and the compose file is validated against the
Compose Specification's JSON schema, vendored in deploy/schema/ with its version noted. Each rule's checker is
also shown rejecting a reference that breaks it, so a rule cannot pass vacuously."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.images import (
    COMPOSE,
    CVE_2025_62506_FIX,
    DEPLOY,
    GONE,
    MINIO_SERVER_REPOSITORY,
    ROOT,
    ImageRef,
    base_images,
    compose,
    compose_services,
    dockerfile_args,
    dockerfiles,
    kubernetes_images,
    minio_release,
    pulled_images,
)

SCHEMA = DEPLOY / "schema" / "compose-spec.json"
README = ROOT / "README.md"


def every_pulled_image() -> dict[str, ImageRef]:
    """Compose services' images, every Dockerfile's bases in deploy/, and the Kubernetes manifests' images."""
    found = {f"docker-compose.yml: {name}": ref for name, ref in pulled_images().items()}
    for path in dockerfiles():
        for ref in base_images(path):
            found[f"{path.relative_to(ROOT)}: FROM {ref.full_name}"] = ref
    for ref in kubernetes_images():
        found[f"deploy/k8s: {ref.full_name}"] = ref
    return found


# Rule 1: every image is pinned ----------------------------------------------------------------------------------


def test_rule_every_image_is_pinned_by_a_version_tag_or_a_digest() -> None:
    images = every_pulled_image()
    assert len(images) >= 10  # compose's services, both Dockerfiles' bases, the Kubernetes image
    unpinned = {where: ref for where, ref in images.items() if not ref.pinned}
    assert not unpinned, unpinned


def test_rule_every_image_built_here_is_tagged_but_never_latest() -> None:
    for name, service in compose_services().items():
        if "build" in service:
            assert ImageRef.parse(service["image"]).tag not in (None, "latest"), name


@pytest.mark.parametrize(
    "reference",
    ["redis", "redis:latest", "prom/prometheus:latest@sha256:" + "0" * 64, "grafana/grafana:main", "x@sha256:abc"],
)
def test_the_pinning_rule_rejects(reference: str) -> None:
    assert not ImageRef.parse(reference).pinned


# Rule 2: nothing from a repository known to be gone ---------------------------------------------------------


def test_rule_no_image_comes_from_a_repository_known_to_be_gone() -> None:
    gone = {where: ref.full_name for where, ref in every_pulled_image().items() if ref.full_name.startswith(GONE)}
    assert not gone, gone
    # nor through a build argument (the MinIO Dockerfile takes its base image as one)
    for name, service in compose_services().items():
        for value in (service.get("build", {}).get("args") or {}).values():
            if "/" in str(value):
                assert not ImageRef.parse(str(value)).full_name.startswith(GONE), name


@pytest.mark.parametrize(
    "reference", ["minio/minio:RELEASE.2025-09-07T16-13-09Z", "docker.io/minio/mc:RELEASE.2025-08-13T08-35-41Z"]
)
def test_the_gone_rule_rejects_docker_hubs_minio(reference: str) -> None:
    assert ImageRef.parse(reference).full_name.startswith(GONE)
    assert not ImageRef.parse(f"quay.io/{reference.removeprefix('docker.io/')}").full_name.startswith(GONE)


# Rule 3: MinIO at or after the CVE-2025-62506 fix -------------------------------------------------------------


def minio_servers() -> dict[str, str]:
    """The MinIO release each compose service runs: a pulled minio/minio image's tag, or, for a service built
    from a Dockerfile on a minio/minio base, the release its build stage compiles — when the Dockerfile copies
    that binary over the base's /usr/bin/minio; otherwise the base image's own release."""
    servers = {}
    for name, service in compose_services().items():
        if "build" not in service:
            ref = ImageRef.parse(service["image"])
            if ref.repository == MINIO_SERVER_REPOSITORY:
                servers[name] = ref.tag or "latest"
            continue
        dockerfile = ROOT / service["build"]["context"] / service["build"].get("dockerfile", "Dockerfile")
        bases = [ref for ref in base_images(dockerfile) if ref.repository == MINIO_SERVER_REPOSITORY]
        if not bases:
            continue
        text = dockerfile.read_text()
        release = {**dockerfile_args(text), **(service["build"].get("args") or {})}.get("MINIO_RELEASE")
        replaces = re.search(r"^COPY\s+--from=build\b.*\s/usr/bin/minio\s*$", text, flags=re.MULTILINE)
        servers[name] = release if release and replaces else (bases[-1].tag or "latest")
        # the image is tagged with the release it holds, so `docker images` says which MinIO runs
        assert ImageRef.parse(service["image"]).tag == servers[name], name
    return servers


def test_rule_every_minio_server_is_at_or_after_the_cve_2025_62506_fix() -> None:
    servers = minio_servers()
    assert {"minio", "milvus-minio"} <= set(servers)  # the service's MinIO and Milvus's storage
    fix = minio_release(CVE_2025_62506_FIX)
    old = {name: release for name, release in servers.items() if minio_release(release) < fix}
    assert not old, f"older than {CVE_2025_62506_FIX}: {old}"


def test_the_minio_build_checks_the_commit_its_release_tag_names() -> None:
    # RELEASE.2025-10-15T17-29-55Z is commit 9e49d5e7 (minio/minio); a moved tag must fail the build.
    text = (DEPLOY / "minio" / "Dockerfile").read_text()
    assert dockerfile_args(text)["MINIO_COMMIT"] == "9e49d5e7a648f00e26f2246f4dc28e6b07f8c84a"
    assert 'test "$(git rev-parse HEAD)" = "$MINIO_COMMIT"' in text
    for name in ("minio", "milvus-minio"):
        assert compose_services()[name]["build"]["args"]["MINIO_COMMIT"] == dockerfile_args(text)["MINIO_COMMIT"]


@pytest.mark.parametrize(
    ("release", "vulnerable"),
    [
        ("RELEASE.2025-09-07T16-13-09Z", True),  # the newest image MinIO published, archived on quay.io
        ("RELEASE.2025-09-07T16-13-09Z-cpuv1", True),
        ("RELEASE.2025-10-15T17-29-54Z", True),
        ("RELEASE.2025-10-15T17-29-55Z", False),
    ],
)
def test_the_cve_rule_orders_releases_by_time(release: str, vulnerable: bool) -> None:
    assert (minio_release(release) < minio_release(CVE_2025_62506_FIX)) is vulnerable


def test_a_minio_tag_that_is_no_release_is_refused() -> None:
    with pytest.raises(ValueError, match="not a MinIO release tag"):
        minio_release("latest")


# Rule 4: the compose file is valid Compose --------------------------------------------------------------------


def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA.read_text())
    return document


def compose_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_rule_the_compose_file_validates_against_the_compose_specification_schema() -> None:
    assert compose_errors(compose()) == []


def test_the_schema_rule_rejects_an_invalid_compose_file() -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["redis"]["restart_policy"] = "always"  # a Swarm key, not a service key
    broken["services"]["minio"]["depends_on"]["producer"] = {"condition": "service_ready"}
    errors = compose_errors(broken)
    assert any(e.startswith("services/redis") for e in errors), errors
    assert any(e.startswith("services/minio/depends_on") for e in errors), errors


def test_the_vendored_schema_is_the_version_its_note_names() -> None:
    note = (DEPLOY / "schema" / "README.md").read_text()
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() in note
    assert "Docker Compose v2.40.3" in note
    assert schema()["$id"] == "compose_spec.json"


# Rule 5: the Milvus server is a major the support table lists --------------------------------------------------


def supported_milvus_majors() -> set[int]:
    text = README.read_text()
    table = text[text.index("### Supported versions") :]
    row = re.search(r"^\| Milvus server \| ([^|]+)\|", table, flags=re.MULTILINE)
    assert row is not None, "README's supported-versions table has no Milvus server row"
    return {int(major) for major in re.findall(r"\b(\d+)\.x\b", row.group(1))}


def milvus_major(reference: str) -> int:
    match = re.match(r"v?(\d+)\.", ImageRef.parse(reference).tag or "")
    if match is None:
        raise ValueError(f"no version in {reference!r}")
    return int(match.group(1))


def test_rule_the_milvus_server_major_is_one_the_support_table_lists() -> None:
    majors = supported_milvus_majors()
    assert majors
    assert ImageRef.parse(compose_services()["milvus"]["image"]).repository == "milvusdb/milvus"
    assert milvus_major(compose_services()["milvus"]["image"]) in majors


def test_the_compose_milvus_is_the_generation_the_pinned_pymilvus_is_made_for() -> None:
    # pymilvus N.x is the SDK release for Milvus N.x (pymilvus v3.0.1 release notes: "the recommended Python SDK
    # release for Milvus 3.0"; Milvus v3.0.1 release notes pair it with Python SDK 3.0.1).
    pin = re.search(r"^pymilvus==(\d+)\.", (ROOT / "constraints.txt").read_text(), flags=re.MULTILINE)
    assert pin is not None
    assert milvus_major(compose_services()["milvus"]["image"]) == int(pin.group(1))


@pytest.mark.parametrize(("reference", "major"), [("milvusdb/milvus:v2.5.10", 2), ("milvusdb/milvus:v3.0.1", 3)])
def test_the_milvus_rule_reads_the_major(reference: str, major: int) -> None:
    assert milvus_major(reference) == major
    assert (major in supported_milvus_majors()) is (major == 3)


def test_a_milvus_image_without_a_version_is_refused() -> None:
    with pytest.raises(ValueError, match="no version"):
        milvus_major("milvusdb/milvus:latest")


def test_every_dockerfile_in_deploy_is_checked() -> None:
    assert {p.relative_to(DEPLOY) for p in dockerfiles()} == {Path("Dockerfile"), Path("minio/Dockerfile")}
