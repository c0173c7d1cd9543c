"""Bad configuration stops the processes at start, with a message naming what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tooling.localstack import BIN, free_port

pytestmark = pytest.mark.integration


def run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEDUP_")}
    base.update(
        DEDUP_BUCKETS="photos",
        DEDUP_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: start-up must fail first
        DEDUP_MILVUS_URI=str(tmp_path / "milvus.db"),
        DEDUP_MODEL_WEIGHTS="random",
        DEDUP_METRICS_PORT="0",
    )
    base.update(env)
    return subprocess.run(argv, env=base, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)


WORKER = [str(BIN / "celery"), "-A", "worker", "worker", "--loglevel", "INFO"]


def test_the_worker_refuses_an_invalid_setting_naming_it(tmp_path: Path) -> None:
    result = run(WORKER, tmp_path, DEDUP_BATCH_SIZE="lots")
    assert result.returncode == 2
    assert "invalid configuration: DEDUP_BATCH_SIZE: Input should be a valid integer" in result.stderr


def test_the_worker_refuses_missing_weights_before_taking_messages(tmp_path: Path) -> None:
    result = run(WORKER, tmp_path, DEDUP_MODEL_WEIGHTS=str(tmp_path / "nowhere.pth"))
    assert result.returncode == 1
    assert f"DEDUP_MODEL_WEIGHTS={tmp_path / 'nowhere.pth'}: no such file" in result.stdout + result.stderr


def test_the_worker_refuses_the_prefork_pool(tmp_path: Path) -> None:
    # (`--pool prefork` itself is replaced by the app's configured threads pool in Celery's CLI; its alias is not.)
    result = run([*WORKER, "--pool", "processes"], tmp_path)
    assert result.returncode == 2
    assert "pool 'prefork' is not supported" in result.stdout + result.stderr


def test_the_webhook_needs_a_token_unless_explicitly_disabled(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "producer", "webhook"], tmp_path, DEDUP_WEBHOOK_TOKEN="")
    assert result.returncode == 2
    assert "DEDUP_WEBHOOK_TOKEN: required" in result.stderr


def test_producers_refuse_an_empty_allow_list(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "producer", "backfill", "--bucket", "photos"], tmp_path, DEDUP_BUCKETS="")
    assert result.returncode == 2
    assert "DEDUP_BUCKETS: set the buckets to watch" in result.stderr


def test_a_perceptual_only_worker_refuses_a_semantic_threshold(tmp_path: Path) -> None:
    result = run(WORKER, tmp_path, DEDUP_MODEL_WEIGHTS="none", DEDUP_SEMANTIC_THRESHOLD="0.9")
    assert result.returncode == 2
    assert (
        "invalid configuration: DEDUP_MODEL_WEIGHTS=none loads no model (perceptual-only), but "
        "DEDUP_SEMANTIC_THRESHOLD=0.9 needs one"
    ) in result.stderr


def test_a_perceptual_only_worker_refuses_a_collection_made_with_a_model(tmp_path: Path) -> None:
    # Made as a worker with weights makes it, in a process of its own: a Lite file serves one process at a time.
    made = f"from worker.index import Index; Index.connect({str(tmp_path / 'milvus.db')!r}, collection='image_dedup')"
    subprocess.run([sys.executable, "-c", made], check=True, timeout=120)
    result = run(WORKER, tmp_path, DEDUP_MODEL_WEIGHTS="none")
    assert result.returncode == 1
    assert (
        "DEDUP_COLLECTION=image_dedup: it was made with a model and holds embeddings, which DEDUP_MODEL_WEIGHTS=none "
        "(perceptual-only) would leave out of date"
    ) in result.stdout + result.stderr
