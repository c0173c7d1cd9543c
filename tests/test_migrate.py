"""A links collection of the older layout stops the worker at start with the migration to run, and
``python -m producer migrate-links`` moves it to the current layout, reading kind and score from S3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pymilvus import DataType, MilvusClient

from tests.helpers import BUCKET, next_time_ms
from tooling.localstack import BIN, LocalStack
from tooling.samples import jpeg, photo
from worker.actions import Actions
from worker.config import Action
from worker.decision import Kind, Match
from worker.index import Index, IndexSchemaError, Link
from worker.messages import ObjectEvent
from worker.outcome import Outcome

pytestmark = pytest.mark.integration

COLLECTION = "image_dedup"
ROOT = Path(__file__).resolve().parent.parent


def old_layout(uri: str, rows: list[tuple[str, str, int]]) -> None:
    """``<collection>_links`` as the previous version created it: id, original, event_time_ms only."""
    client = MilvusClient(uri=uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
    schema.add_field("original", DataType.VARCHAR, max_length=2048)
    schema.add_field("event_time_ms", DataType.INT64)
    schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
    params = MilvusClient.prepare_index_params()
    params.add_index(field_name="original", index_type="INVERTED")
    params.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
    client.create_collection(f"{COLLECTION}_links", schema=schema, index_params=params)
    client.insert(
        f"{COLLECTION}_links", [{"id": i, "original": o, "event_time_ms": t, "unused": [0.0, 0.0]} for i, o, t in rows]
    )
    client.close()


def test_index_connect_names_the_migration_for_an_old_links_layout(tmp_path: Path) -> None:
    uri = str(tmp_path / "old.db")
    old_layout(uri, [("photos/a.jpg", "photos/o.jpg", 1)])
    with pytest.raises(IndexSchemaError, match=r"without kind, score, action; .*python -m producer migrate-links"):
        Index.connect(uri, collection=COLLECTION)


def test_an_old_links_layout_stops_the_worker_and_migrate_links_moves_it(
    stack: LocalStack, tmp_path: Path, prefix: str
) -> None:
    storage, quarantine = stack.storage(), "quarantine-migrate"
    storage.ensure_bucket(quarantine, versioned=True)
    original = f"{BUCKET}/{prefix}o.jpg"
    tagged, moved, gone = (f"{prefix}{name}.jpg" for name in ("tagged", "moved", "gone"))
    data = jpeg(photo("coins.png"))
    for key in (tagged, moved):
        storage.put(BUCKET, key, data)
    tag_mode = Actions(storage, Action.TAG, quarantine_bucket=quarantine)
    tag_mode.tag(ObjectEvent(BUCKET, tagged, 1), Outcome.duplicate(Match(original, 1, Kind.PERCEPTUAL, 0.9531)))
    etag = storage.stat(BUCKET, moved)
    assert etag is not None
    Actions(storage, Action.QUARANTINE, quarantine_bucket=quarantine).quarantine(
        ObjectEvent(BUCKET, moved, 1),
        Outcome.duplicate(Match(original, 1, Kind.EXACT, 1.0)),
        etag=etag.etag,
        sha256=storage.sha256(BUCKET, moved),
    )
    uri = str(tmp_path / "milvus.db")
    times = {key: next_time_ms() for key in (tagged, moved, gone)}
    rows = [(f"{BUCKET}/{key}", original, when) for key, when in times.items()]
    # In another process: a Milvus Lite file stays held by the process that opened it, until that one exits.
    setup = f"from tests.test_migrate import old_layout; old_layout({uri!r}, {rows!r})"
    subprocess.run([sys.executable, "-c", setup], cwd=ROOT, check=True, timeout=120)
    env = stack.env({"DEDUP_MILVUS_URI": uri, "DEDUP_QUARANTINE_BUCKET": quarantine, "DEDUP_MODEL_WEIGHTS": "random"})
    worker = subprocess.run(
        [str(BIN / "celery"), "-A", "worker", "worker", "--loglevel", "INFO"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    assert worker.returncode != 0
    assert "run `python -m producer migrate-links`" in worker.stdout + worker.stderr

    backup = tmp_path / "backup.jsonl"
    command = [sys.executable, "-m", "producer", "migrate-links", "--backup", str(backup)]
    migrated = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert migrated.returncode == 0, migrated.stderr
    assert "3 links in the current layout" in migrated.stdout
    assert not backup.exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert "already current" in again.stdout

    index = Index.connect(uri, collection=COLLECTION)
    try:
        links = index.links_of(f"{BUCKET}/{key}" for key in times)
        assert links[f"{BUCKET}/{tagged}"].score == pytest.approx(0.9531)
        assert {k: link._replace(score=round(link.score, 4)) for k, link in links.items()} == {
            f"{BUCKET}/{tagged}": Link(f"{BUCKET}/{tagged}", original, times[tagged], "perceptual", 0.9531, "tag"),
            f"{BUCKET}/{moved}": Link(f"{BUCKET}/{moved}", original, times[moved], "exact", 1.0, "quarantine"),
            f"{BUCKET}/{gone}": Link(f"{BUCKET}/{gone}", original, times[gone], "none", 0.0, ""),
        }
    finally:
        index.close()
