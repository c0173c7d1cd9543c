"""Shared fixtures: real services on loopback (never mocks of our own boundaries).

A service that cannot be started fails the test that needs it; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BUCKET, forget_server, server_index
from tooling.localstack import LocalStack
from worker.embedding import Embedder
from worker.index import Index


@pytest.fixture(autouse=True, scope="session")
def _no_dedup_environment() -> None:
    """Tests configure everything explicitly; a developer's DEDUP_* variables must not leak in."""
    for name in [n for n in os.environ if n.startswith("DEDUP_")]:
        del os.environ[name]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """redis-server and an S3 server (minio if on PATH, else moto), shared by the whole session."""
    with LocalStack(tmp_path_factory.mktemp("stack"), buckets=(BUCKET,)) as running:
        yield running


@pytest.fixture(scope="module")
def milvus_server(stack: LocalStack) -> Iterator[str]:
    """A real Milvus server (PyPI ``milvus`` 2.3.5, not Lite), shared by a test module: its ``http://`` URI. Tests
    take their own collections there (:func:`tests.helpers.server_index`). One module at a time: two such servers
    cannot run at once (their embedded etcd's peer port is fixed), and ``make scale``'s test starts its own."""
    service, uri = stack.start_milvus_server()
    yield uri
    forget_server(uri)
    stack.stop_service(service)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """Random-weight ResNet-50 on the CPU: real plumbing, meaningless features (the loud warning is expected)."""
    return Embedder.load("random", device="cpu")


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to the test, so tests sharing a bucket never see each other's objects."""
    return "".join(c if c.isalnum() else "-" for c in request.node.name)[:80] + "/"


@pytest.fixture
def lite_uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus" / "lite.db")


@pytest.fixture
def index(lite_uri: str) -> Iterator[Index]:
    """The service's collections in a fresh Milvus Lite file (test modules with other needs define their own)."""
    idx = Index.connect(lite_uri, collection="image_dedup")
    yield idx
    idx.close()


@pytest.fixture(params=["lite", "server"])
def engines_index(request: pytest.FixtureRequest, lite_uri: str) -> Iterator[Index]:
    """:func:`index` on each engine: a fresh Milvus Lite file, then the module's Milvus server (emptied)."""
    if request.param == "server":
        yield server_index(request.getfixturevalue("milvus_server"), "image_dedup")
        return
    idx = Index.connect(lite_uri, collection="image_dedup")
    yield idx
    idx.close()
