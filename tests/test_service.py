"""End to end: MinIO-format events → webhook → Redis → ``celery -A worker worker`` → tags / quarantine, with the
metrics read back through a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from minio.commonconfig import Tags
from pymilvus import MilvusClient

from tests.deployment import AUTH, Deployment, deploy
from tests.helpers import BUCKET, next_time_ms
from tooling.localstack import LocalStack, free_port
from tooling.samples import Expect, Sample, jpeg, photo, resized, upload_set
from worker.config import Action
from worker.decision import Kind, Status
from worker.messages import ObjectEvent
from worker.outcome import Outcome

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tagging(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("tagging"), db=1) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def quarantining(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("quarantine"), db=2, action=Action.QUARANTINE) as deployment:
        yield deployment


def counts_by_label(samples: list[Sample]) -> Counter[tuple[str, str]]:
    return Counter((s.expect.status, s.expect.kind or "none") for s in samples)


def images_total(d: Deployment, outcome: str, kind: str) -> float:
    return d.query(f'dedup_images_total{{job="worker",outcome="{outcome}",kind="{kind}"}}')


def test_uploads_and_their_copies_end_tagged_and_counted(tagging: Deployment, prefix: str) -> None:
    samples = upload_set(prefix, ["astronaut.png", "chelsea.png"], ["coffee.png", "rocket.jpg"])
    labels = [("unique", "none"), ("duplicate", "exact"), ("duplicate", "perceptual"), ("error", "none")]
    before = {label: images_total(tagging, *label) for label in labels}
    enqueued_before = tagging.query('dedup_events_enqueued_total{job="webhook",task="process"}')

    events = tagging.upload(samples)
    # Originals first: a copy decided before its original would be decided again once the original arrives
    # (tested in test_pipeline.py), which would make the per-outcome counts below depend on thread timing.
    originals = [e for e, s in zip(events, samples, strict=True) if s.expect.status == "unique"]
    tagging.deliver(originals)
    tagging.outcomes(originals)
    tagging.deliver([e for e in events if e not in originals])
    outcomes = tagging.outcomes(events)

    wrong = {s.key: outcomes[s.key] for s in samples if not s.expect.matches(outcomes[s.key], BUCKET)}
    assert not wrong, wrong
    error = tagging.storage.get_tags(BUCKET, f"{prefix}notes.jpg")
    assert error == {"dedup-status": "error", "dedup-reason": "undecodable"}
    expected = counts_by_label(samples)
    for label in labels:
        series = f'dedup_images_total{{job="worker",outcome="{label[0]}",kind="{label[1]}"}}'
        tagging.wait_for_metric(series, before[label] + expected[label])
    tagging.wait_for_metric('dedup_events_enqueued_total{job="webhook",task="process"}', enqueued_before + len(samples))
    tagging.wait_for_metric('dedup_index_size{job="worker"}', 4, at_least=True)
    assert tagging.query('count({job="webhook",__name__=~"dedup_(index_size|removed_total|images_total)"})') == 0
    assert tagging.query('dedup_stage_seconds_count{job="worker",stage="embed"}') > 0
    assert tagging.query('dedup_batch_size_count{job="worker",stage="embed"}') > 0

    assert tagging.query('dedup_redecided_total{job="worker"}') == 0
    # MinIO redelivers: the same events again give the same tags, and nothing becomes an original twice.
    tagging.deliver(events)
    tagging.wait_for_metric(
        'dedup_images_total{job="worker",outcome="duplicate",kind="exact"}',
        before[("duplicate", "exact")] + 2 * expected[("duplicate", "exact")],
    )
    assert tagging.outcomes(events) == outcomes


def test_user_tags_survive_and_odd_keys_round_trip(tagging: Deployment, prefix: str) -> None:
    original_key = f"{prefix}Ünïcødé album/holiday 2024 (1)+50%.jpg"
    [original, copy] = tagging.upload(
        [
            Sample(original_key, jpeg(photo("retina.jpg")), "image/jpeg", Expect("unique")),
            Sample(f"{prefix}copy of it.jpg", jpeg(resized(photo("retina.jpg"))), "image/jpeg", Expect("duplicate")),
        ]
    )
    user_tags = Tags.new_object_tags()
    user_tags["project"] = "holidays"
    tagging.storage.client.set_object_tags(bucket_name=BUCKET, object_name=copy.key, tags=user_tags)
    tagging.deliver([original, copy])
    outcomes = tagging.outcomes([original, copy])
    assert outcomes[copy.key].original == original.id
    tags = tagging.storage.get_tags(BUCKET, copy.key)
    assert tags["project"] == "holidays"
    assert tags["dedup-of"].startswith("b64:")


def test_the_webhook_refuses_bad_requests_and_ignores_what_is_not_new_content(tagging: Deployment) -> None:
    put = notification_for("photos", "x.jpg")
    assert tagging.post(put, headers={}).status_code == 401
    assert tagging.post(put, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert tagging.post(b"{not json").status_code == 400
    assert tagging.post({"hello": "world"}).status_code == 400
    assert tagging.post(b'{"Records": [' + b" " * 2_000_000 + b"]}").status_code == 413

    ignored_before = tagging.query('dedup_events_ignored_total{job="webhook"}')
    tagging_event = notification_for("photos", "x.jpg", "s3:ObjectCreated:PutTagging")
    foreign_bucket = notification_for("elsewhere", "x.jpg")
    for body in (tagging_event, foreign_bucket):
        response = tagging.post(body)
        assert response.status_code == 200
        assert response.json() == {"enqueued": 0, "ignored": 1}
    tagging.wait_for_metric('dedup_events_ignored_total{job="webhook"}', ignored_before + 2)
    assert tagging.query('dedup_webhook_requests_total{job="webhook",code="401"}') >= 2


def notification_for(bucket: str, key: str, name: str = "s3:ObjectCreated:Put") -> dict[str, object]:
    from producer.events import notification

    return notification(name, bucket, key, event_time_ms=next_time_ms())


def test_a_removed_original_no_longer_makes_copies_duplicates(tagging: Deployment, prefix: str) -> None:
    [original] = tagging.upload([Sample(f"{prefix}o.jpg", jpeg(photo("cell.png")), "image/jpeg", Expect("unique"))])
    tagging.deliver([original])
    assert tagging.outcomes([original])[original.key] == Outcome.unique()
    removed_before = tagging.query('dedup_removed_total{job="worker"}')
    tagging.storage.remove(BUCKET, original.key)
    tagging.deliver([ObjectEvent(BUCKET, original.key, next_time_ms())], name="s3:ObjectRemoved:Delete")
    tagging.wait_for_metric('dedup_removed_total{job="worker"}', removed_before + 1)

    [copy] = tagging.upload([Sample(f"{prefix}copy.jpg", jpeg(photo("cell.png")), "image/jpeg", Expect("unique"))])
    tagging.deliver([copy])
    assert tagging.outcomes([copy])[copy.key] == Outcome.unique()


def test_backfill_enqueues_existing_objects_with_progress_and_a_checkpoint(
    tagging: Deployment, prefix: str, tmp_path: Path
) -> None:
    samples = upload_set(prefix, ["moon.png"], ["gravel.png"])
    events = tagging.upload(samples)  # uploaded, but no notification: the backfill finds them
    checkpoint = tmp_path / "backfill.ckpt"
    command = [sys.executable, "-m", "producer", "backfill", "--bucket", BUCKET, "--prefix", prefix]
    result = subprocess.run(
        [*command, "--checkpoint", str(checkpoint)],
        env=tagging.stack.env(DEDUP_BROKER_URL=tagging.stack.broker(tagging.db)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"enqueued {len(samples)} objects" in result.stdout
    assert f"{len(samples)} objects" in result.stderr  # the progress bar
    assert checkpoint.read_text() == max(s.key for s in samples)
    outcomes = tagging.outcomes(events)
    # A backfill orders objects by last-modified time, which S3 keeps to the second: copies uploaded within the
    # same second as their original are ordered by key instead. So: one original per photo, the rest point at it.
    assert outcomes[f"{prefix}notes.jpg"].status is Status.ERROR
    moons = {k: o for k, o in outcomes.items() if k.startswith(f"{prefix}moon")}
    [original] = [k for k, o in moons.items() if o.status is Status.UNIQUE]
    assert all(o.original == f"{BUCKET}/{original}" for k, o in moons.items() if k != original)
    assert outcomes[f"{prefix}gravel.jpg"] == Outcome.unique()


def test_backfill_refuses_a_bucket_outside_the_allow_list(tagging: Deployment) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "producer", "backfill", "--bucket", "elsewhere", "--no-progress"],
        env=tagging.stack.env(DEDUP_BROKER_URL=tagging.stack.broker(tagging.db)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "'elsewhere' is not in DEDUP_BUCKETS" in result.stderr


def test_quarantine_moves_duplicates_and_tags_everything_else(quarantining: Deployment, prefix: str) -> None:
    samples = upload_set(prefix, ["astronaut.png", "chelsea.png"], ["coffee.png"])
    events = quarantining.upload(samples)
    quarantining.deliver(events)
    outcomes = quarantining.outcomes(events)
    wrong = {s.key: outcomes[s.key] for s in samples if not s.expect.matches(outcomes[s.key], BUCKET)}
    assert not wrong, wrong

    storage = quarantining.storage
    remaining = {o.object_name for o in storage.client.list_objects(bucket_name=BUCKET, prefix=prefix, recursive=True)}
    listing = storage.client.list_objects(
        bucket_name=quarantining.quarantine_bucket, prefix=f"{BUCKET}/{prefix}", recursive=True
    )
    quarantined = {o.object_name for o in listing}
    duplicates = {s.key for s in samples if s.expect.status == "duplicate"}
    assert remaining == {s.key for s in samples} - duplicates
    assert quarantined == {f"{BUCKET}/{key}" for key in duplicates}
    for sample in samples:
        if sample.key in duplicates:
            copy = storage.fetch(quarantining.quarantine_bucket, f"{BUCKET}/{sample.key}")
            assert copy.data == sample.data
        else:
            assert storage.get_tags(BUCKET, sample.key)["dedup-status"] in {"unique", "error"}
    kinds = Counter(o.kind for o in outcomes.values() if o.status is Status.DUPLICATE)
    assert kinds == {Kind.EXACT: 2, Kind.PERCEPTUAL: 10}


def test_the_webhook_answers_503_while_the_broker_is_unreachable(stack: LocalStack) -> None:
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    webhook, url = stack.start_webhook({"DEDUP_BROKER_URL": dead_broker})
    try:
        body = notification_for(BUCKET, "x.jpg")
        response = httpx.post(url, json=body, headers=AUTH, timeout=60)
        assert response.status_code == 503  # not 2xx: MinIO keeps the event and retries
        ready = httpx.get(url.replace("/minio/events", "/readyz"), timeout=30)
        assert ready.status_code == 503
    finally:
        stack.stop_service(webhook)


def test_perceptual_only_tags_copies_without_a_model_or_embeddings(stack: LocalStack, tmp_path: Path) -> None:
    """DEDUP_MODEL_WEIGHTS=none end to end: a resized, re-encoded copy is still a duplicate; the worker never loads
    (nor imports) torch, and the originals it stores carry the constant vector, no embedding. Its Milvus is a Lite
    server, so that this test can read the rows while the worker runs."""
    milvus, uri = stack.start_milvus("milvus-perceptual-only")
    env = {"DEDUP_MODEL_WEIGHTS": "none", "DEDUP_MILVUS_URI": uri}
    try:
        with deploy(stack, tmp_path, db=19, env=env) as d:
            cat = photo("chelsea.png")
            original, small, again, other = d.upload_bytes(
                {
                    "perceptual-only/cat.jpg": jpeg(cat),
                    "perceptual-only/cat-small.jpg": jpeg(resized(cat), 70),
                    "perceptual-only/cat-again.jpg": jpeg(cat),
                    "perceptual-only/rocket.jpg": jpeg(photo("rocket.jpg")),
                }
            )
            d.deliver([original])
            assert d.outcomes([original])[original.key] == Outcome.unique()
            d.deliver([small, again, other])
            outcomes = d.outcomes([original, small, again, other])
            assert outcomes[other.key] == Outcome.unique()
            assert (outcomes[small.key].status, outcomes[small.key].original, outcomes[small.key].kind) == (
                Status.DUPLICATE,
                original.id,
                Kind.PERCEPTUAL,
            )
            assert (outcomes[again.key].original, outcomes[again.key].kind) == (original.id, Kind.EXACT)
            assert d.storage.get_tags(BUCKET, small.key)["dedup-of"] == original.id

            client = MilvusClient(uri=uri)
            try:
                ids = json.dumps([e.id for e in (original, small, again, other)])
                rows = client.query("image_dedup", filter=f"id in {ids}", output_fields=["id", "embedding"])
            finally:
                client.close()
            stored = {row["id"]: [float(v) for v in row["embedding"]] for row in rows}
            assert stored == {original.id: [0.0, 0.0], other.id: [0.0, 0.0]}  # no embedding: the unused vector

            d.wait_for_metric('dedup_worker_info{job="worker",weights="none",device="none"}', 1)
            assert d.query('dedup_batch_size_count{job="worker",stage="embed"}') == 0
            assert d.worker.process is not None
            libraries = Path(f"/proc/{d.worker.process.pid}/maps").read_text()
            assert "libtorch" not in libraries  # not even imported
    finally:
        stack.stop_service(milvus)
