"""Container image references in docker-compose.yml and deploy/, read statically (no Docker here).

>>> ref = ImageRef.parse("quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z@sha256:" + "a" * 64)
>>> (ref.registry, ref.repository, ref.tag, ref.pinned)
('quay.io', 'minio/mc', 'RELEASE.2025-08-13T08-35-41Z', True)
>>> ImageRef.parse("redis").full_name
'docker.io/library/redis'
>>> minio_release("RELEASE.2025-10-15T17-29-55Z") >= CVE_2025_62506_FIX
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"

#: Repositories that no longer exist: a pull fails with "pull access denied … repository does not exist".
#: MinIO removed both from Docker Hub between 2026-09-09 and 2026-09-12 (docs/s3-servers.md "MinIO images").
GONE = ("docker.io/minio/",)

#: The release that fixed CVE-2025-62506 (GHSA-jjjj-jwhf-8rgr): older MinIO servers are vulnerable.
CVE_2025_62506_FIX = "RELEASE.2025-10-15T17-29-55Z"

#: Where MinIO's server images live, on any registry (quay.io/minio/minio; docker.io/minio/minio before it went).
MINIO_SERVER_REPOSITORY = "minio/minio"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_RELEASE = re.compile(r"^RELEASE\.(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)")


@dataclass(frozen=True)
class ImageRef:
    """``[registry/]repository[:tag][@digest]``, with Docker's defaults filled in."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        rest, _, digest = text.partition("@")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        else:
            registry = "docker.io"
        name, colon, tag = rest.rpartition(":") if ":" in rest.split("/")[-1] else (rest, "", "")
        if registry == "docker.io" and "/" not in name:
            name = f"library/{name}"
        return cls(registry, name, tag if colon else None, digest or None)

    @property
    def full_name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        """Pinned: a well-formed digest, or a tag that names a version (has a digit) and is not ``latest``."""
        if self.digest is not None:
            return bool(_DIGEST.match(self.digest)) and self.tag != "latest"
        return self.tag is not None and self.tag != "latest" and any(c.isdigit() for c in self.tag)


def minio_release(tag: str) -> datetime:
    """The time a MinIO release tag names (``RELEASE.2025-10-15T17-29-55Z`` and its ``-cpuv1``-style variants)."""
    match = _RELEASE.match(tag)
    if match is None:
        raise ValueError(f"not a MinIO release tag: {tag!r}")
    return datetime.strptime(match.group(1), "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=UTC)


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def pulled_images() -> dict[str, ImageRef]:
    """Every image compose pulls, by service: services with a ``build`` make theirs here instead."""
    return {
        name: ImageRef.parse(service["image"])
        for name, service in compose_services().items()
        if "image" in service and "build" not in service
    }


def dockerfiles() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and (p.name == "Dockerfile" or p.suffix == ".Dockerfile"))


def dockerfile_args(text: str) -> dict[str, str]:
    """Each ``ARG NAME=default`` of a Dockerfile (the last default wins, as in a build without --build-arg)."""
    return dict(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)", text, flags=re.MULTILINE))


def base_images(path: Path) -> list[ImageRef]:
    """The images a Dockerfile's ``FROM`` lines pull, with ``${ARG}`` defaults substituted (stage names skipped)."""
    text = path.read_text()
    args = dockerfile_args(text)
    stages: set[str] = set()
    found = []
    for source, stage in re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.M | re.I):
        resolved = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), source)
        if resolved.lower() not in stages:
            found.append(ImageRef.parse(resolved))
        if stage:
            stages.add(stage.lower())
    return found


def kubernetes_images() -> list[ImageRef]:
    """The images the Kubernetes manifests run after kustomize's ``images`` rewrite."""
    k8s = DEPLOY / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    rewrites = {entry["name"]: entry for entry in kustomization.get("images", [])}
    found = []
    for path in sorted(k8s.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for image in _container_images(document):
                rewrite = rewrites.get(image)
                if rewrite is None:
                    found.append(ImageRef.parse(image))
                    continue
                name = rewrite.get("newName", image)
                digest = rewrite.get("digest")
                text = f"{name}:{rewrite['newTag']}" if "newTag" in rewrite else name
                found.append(ImageRef.parse(f"{text}@{digest}" if digest else text))
    return found


def _container_images(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["image"]] if isinstance(node.get("image"), str) and "name" in node else []
        return own + [image for value in node.values() for image in _container_images(value)]
    if isinstance(node, list):
        return [image for value in node for image in _container_images(value)]
    return []
