"""The package's declared dependencies: every one bounded above, so a new major release cannot break installs."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    listed = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return [Requirement(r) for r in listed if Requirement(r).name != project["name"]]


def test_every_dependency_has_an_upper_bound() -> None:
    unbounded = [str(r) for r in requirements() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert not unbounded, f"bound these above in pyproject.toml: {unbounded}"


def test_the_check_sees_the_runtime_core() -> None:
    names = {r.name for r in requirements()}
    assert {"celery", "redis", "pymilvus", "torch", "torchvision", "pillow", "minio", "prometheus-client"} <= names


#: What the GPU machines' CUDA PyTorch image already holds of the service's runtime dependencies (the device tool's
#: KINDS.md package list); deploy/gpu/kit.sh carries the rest as wheels.
GPU_IMAGE = {"torch", "torchvision", "pillow", "numpy", "prometheus-client", "typer", "tqdm", "jinja2"}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_gpu_kit_carries_every_runtime_dependency_the_gpu_image_lacks() -> None:
    done = subprocess.run(
        ["bash", "deploy/gpu/kit.sh", "pins"], cwd=PYPROJECT.parent, capture_output=True, text=True, check=True
    )
    carried = {_canonical(line.split("==")[0]) for line in done.stdout.split()}
    runtime = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    needed = {_canonical(Requirement(r).name) for r in runtime} - GPU_IMAGE
    assert needed <= carried, f"add to deploy/gpu/kit.sh's PACKAGES: {sorted(needed - carried)}"
    assert {"moto", "flask", "faiss-cpu"} <= carried  # the S3 test server and Milvus Lite's index
