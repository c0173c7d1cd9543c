"""The package's declared dependencies: every one bounded above, so a new major release cannot break installs."""

from __future__ import annotations

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
