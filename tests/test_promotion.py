"""The last copy of a picture is never left only in quarantine: when an original goes (removed, or overwritten
with other bytes), its earliest quarantined duplicate comes back as the new original (:mod:`worker.promotion`).

In-process pipelines on the real S3 server and Milvus Lite for the decisions and the races; the real stack
(webhook + ``celery -A worker worker``, SIGKILLed mid-promotion) for the end-to-end runs.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from producer.gallery_app import load_page
from producer.gallery_pages import Filters
from tests.deployment import Deployment, deploy
from tests.helpers import BUCKET, next_time_ms
from tests.rig import Rig, SameEmbedding, build
from tooling.localstack import LocalStack, wait_until
from tooling.samples import brightened, grayscale, jpeg, photo, resized
from worker.actions import META_SHA256, Actions, quarantine_key
from worker.config import Action, OnOriginalRemoved, load_settings
from worker.decision import Status
from worker.embedding import Embedder
from worker.index import Index
from worker.messages import ObjectEvent
from worker.undo import Reviewer
from worker.verdicts import PROMOTED, Reviews

pytestmark = pytest.mark.integration


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def quarantining(stack: LocalStack, index: Index, embedder: Embedder) -> Iterator[Rig]:
    built = build(stack, index, embedder, action=Action.QUARANTINE)
    yield built
    built.pipeline.close()


def settle(rig: Rig) -> None:
    """Process what was sent back, as the queue would, until nothing is."""
    while rig.sent_back:
        rig.pipeline.process(rig.sent_back.pop(0))


def _actions(rig: Rig) -> Actions:
    return Actions(rig.storage, Action.QUARANTINE, quarantine_bucket=rig.pipeline.settings.quarantine_bucket)


def _quarantined(rig: Rig, key: str) -> bool:
    return rig.storage.stat(BUCKET, key) is None and _actions(rig).find_copy(BUCKET, key) is not None


def _group(rig: Rig, prefix: str) -> tuple[bytes, ObjectEvent, ObjectEvent, ObjectEvent]:
    """An original, its exact copy and a smaller copy, decided in that order: both copies quarantined."""
    data = jpeg(photo("rocket.jpg"))
    original = rig.upload(f"{prefix}o/rocket.jpg", data)
    copy = rig.upload(f"{prefix}d/rocket-copy.jpg", data)
    small = rig.upload(f"{prefix}d/rocket-small.jpg", jpeg(resized(photo("rocket.jpg"))))
    statuses = [rig.pipeline.process(e).status for e in (original, copy, small)]
    assert statuses == [Status.UNIQUE, Status.DUPLICATE, Status.DUPLICATE]
    assert _quarantined(rig, copy.key)
    assert _quarantined(rig, small.key)
    return data, original, copy, small


def _remove(rig: Rig, event: ObjectEvent) -> None:
    rig.storage.remove(BUCKET, event.key)
    rig.pipeline.remove(ObjectEvent(BUCKET, event.key, next_time_ms()))


def _assert_promoted(rig: Rig, event: ObjectEvent, data: bytes, reason: str = "original_removed") -> None:
    assert rig.storage.sha256(BUCKET, event.key) == _sha(data)  # the exact bytes that were quarantined
    tags = rig.tags(event.key)
    assert (tags["dedup-status"], tags["dedup-promoted"]) == ("unique", reason)
    assert "dedup-of" not in tags
    index = rig.pipeline.index
    assert index.stored([event.id])[event.id][0] == _sha(data)  # the new original in the index
    assert index.links_of([event.id]) == {}
    actions = Actions(rig.storage, Action.QUARANTINE, quarantine_bucket=rig.pipeline.settings.quarantine_bucket)
    kept = actions.find_copy(BUCKET, event.key)
    assert kept is not None, "the quarantined copy is kept, as restore keeps it"
    assert kept.info.metadata[META_SHA256] == _sha(data)


@pytest.mark.parametrize("order", ["earliest first", "latest first"])
def test_removing_the_original_brings_its_earliest_quarantined_copy_back_and_the_rest_follow(
    quarantining: Rig, prefix: str, order: str
) -> None:
    rig = quarantining
    data, original, copy, small = _group(rig, prefix)
    promoted_before = _counter("dedup_promoted_total")
    _remove(rig, original)
    assert sorted((e.id, e.redecision) for e in rig.sent_back) == [
        (copy.id, "original_removed"),
        (small.id, "original_removed"),
    ]
    if order == "latest first":  # the later copy is promoted first, then yields to the earlier one
        rig.sent_back.reverse()
    settle(rig)

    _assert_promoted(rig, copy, data)
    assert _quarantined(rig, small.key)  # the other duplicate stays in quarantine ...
    assert rig.pipeline.index.links_of([small.id])[small.id].original == copy.id  # ... pointing at the new one
    kept = _actions(rig).find_copy(BUCKET, small.key)
    assert kept is not None
    small_copy = quarantine_key(BUCKET, small.key)
    quarantine = rig.pipeline.settings.quarantine_bucket
    assert rig.storage.get_tags(quarantine, small_copy, kept.version)["dedup-of"] == copy.id  # its copy says so too
    assert Reviews(rig.pipeline.index).of(copy.id)[PROMOTED].original == original.id  # why, for the gallery
    assert _counter("dedup_promoted_total") >= promoted_before + 1

    # Settled: the copy-back's own event, and a replay of the first upload's, change nothing.
    for again in (ObjectEvent(BUCKET, copy.key, next_time_ms()), copy):
        assert rig.pipeline.process(again).status is Status.UNIQUE
    assert rig.sent_back == []
    assert rig.tags(copy.key)["dedup-promoted"] == "original_removed"


def test_siblings_decided_in_one_batch_promote_one_picture_not_two(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    """The re-decisions of a gone original's duplicates arrive together and meet in one batch, which compares
    its items by whole-picture hash only: a brightened copy, found through the original's stored brightened
    hash, must still yield to the promoted exact copy rather than be promoted beside it."""
    rig = build(stack, index, embedder, action=Action.QUARANTINE, batch_size=16, batch_wait_ms=1500)
    try:
        data = jpeg(photo("astronaut.png"))
        original = rig.upload(f"{prefix}o.jpg", data)
        copies = {
            "copy": data,
            "bright": jpeg(brightened(photo("astronaut.png"))),
            "gray": jpeg(grayscale(photo("astronaut.png"))),
            "small": jpeg(resized(photo("astronaut.png"))),
        }
        events = [rig.upload(f"{prefix}{name}.jpg", body) for name, body in copies.items()]
        assert rig.pipeline.process(original).status is Status.UNIQUE
        assert [rig.pipeline.process(e).status for e in events] == [Status.DUPLICATE] * len(events)
        _remove(rig, original)
        sent, rig.sent_back[:] = list(rig.sent_back), []
        with ThreadPoolExecutor(len(sent)) as pool:  # one batch: they wait for each other
            list(pool.map(rig.pipeline.process, sent))
        settle(rig)
        copy, *others = events
        _assert_promoted(rig, copy, data)
        for other in others:
            assert _quarantined(rig, other.key), other.key
            assert rig.pipeline.index.links_of([other.id])[other.id].original == copy.id
    finally:
        rig.pipeline.close()


def test_an_original_overwritten_with_other_bytes_promotes_its_quarantined_copy(quarantining: Rig, prefix: str) -> None:
    rig = quarantining
    data, original, copy, small = _group(rig, prefix)
    overwrite = rig.upload(original.key, jpeg(photo("coins.png")))
    assert rig.pipeline.process(overwrite).status is Status.UNIQUE
    assert sorted(e.redecision or "" for e in rig.sent_back) == ["original_changed", "original_changed"]
    settle(rig)
    _assert_promoted(rig, copy, data, reason="original_changed")
    assert rig.pipeline.index.links_of([small.id])[small.id].original == copy.id


def test_keep_leaves_every_copy_in_quarantine_logged_and_counted(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig = build(stack, index, embedder, action=Action.QUARANTINE, on_original_removed=OnOriginalRemoved.KEEP)
    try:
        _, original, copy, small = _group(rig, prefix)
        kept_before = _counter("dedup_left_in_quarantine_total", reason="keep")
        _remove(rig, original)
        with caplog.at_level("INFO", logger="worker.promotion"):
            settle(rig)
        assert _quarantined(rig, copy.key)
        assert _quarantined(rig, small.key)
        assert rig.pipeline.index.stored([copy.id, small.id]) == {}
        assert _counter("dedup_left_in_quarantine_total", reason="keep") == kept_before + 2
        assert f"{copy.id}: stays in quarantine although its original {original.id} went" in caplog.text
        assert "DEDUP_ON_ORIGINAL_REMOVED=keep" in caplog.text
    finally:
        rig.pipeline.close()


def test_the_original_uploaded_again_meanwhile_promotes_nothing_and_overwrites_nothing(
    quarantining: Rig, prefix: str
) -> None:
    rig = quarantining
    data, original, copy, small = _group(rig, prefix)
    _remove(rig, original)
    again = rig.upload(original.key, data)  # back before the re-decisions run
    back_before = _counter("dedup_left_in_quarantine_total", reason="original_back")
    settle(rig)
    assert _quarantined(rig, copy.key)
    assert _quarantined(rig, small.key)
    assert _counter("dedup_left_in_quarantine_total", reason="original_back") == back_before + 2
    assert rig.pipeline.process(again).status is Status.UNIQUE
    settle(rig)
    assert rig.storage.sha256(BUCKET, original.key) == _sha(data)
    assert _quarantined(rig, copy.key)
    assert _quarantined(rig, small.key)
    assert rig.pipeline.index.dependents([original.id]).keys() == {copy.id, small.id}


@pytest.mark.parametrize("first", ["reviewer", "worker"])
def test_a_reviewer_restoring_the_same_duplicate_meanwhile_ends_with_one_verified_object(
    quarantining: Rig, prefix: str, first: str
) -> None:
    rig = quarantining
    data, original, copy, small = _group(rig, prefix)
    _remove(rig, original)
    sent: list[ObjectEvent] = []
    reviewer = Reviewer(rig.pipeline.settings, storage=rig.storage, index=rig.pipeline.index, redecide=sent.append)
    if first == "reviewer":
        assert reviewer.restore(copy.id).what == "copied back from quarantine"
        settle(rig)
    else:
        settle(rig)
        assert reviewer.restore(copy.id).what == "already back in place"
    rig.sent_back.extend(sent)
    settle(rig)
    assert rig.storage.sha256(BUCKET, copy.key) == _sha(data)
    assert rig.tags(copy.key)["dedup-status"] == "unique"
    assert rig.tags(copy.key)["dedup-reviewed"] == "restored"
    assert rig.pipeline.index.stored([copy.id])[copy.id][0] == _sha(data)
    assert _quarantined(rig, small.key)
    assert rig.pipeline.index.links_of([small.id])[small.id].original == copy.id


def test_two_workers_handling_the_removal_promote_once(
    stack: LocalStack, index: Index, embedder: Embedder, quarantining: Rig, prefix: str
) -> None:
    rig, other = quarantining, build(stack, index, embedder, action=Action.QUARANTINE)
    try:
        data, original, copy, small = _group(rig, prefix)
        rig.storage.remove(BUCKET, original.key)
        removal = ObjectEvent(BUCKET, original.key, next_time_ms())
        both = [threading.Thread(target=worker.pipeline.remove, args=(removal,)) for worker in (rig, other)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(120)
        assert len(rig.sent_back) + len(other.sent_back) >= 2
        # Each worker decides what it was sent, at the same time.
        runs = [threading.Thread(target=settle, args=(worker,)) for worker in (rig, other)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join(300)
        settle(rig)
        settle(other)
        _assert_promoted(rig, copy, data)
        assert len(rig.storage.versions(BUCKET, copy.key)) <= 1
        assert _quarantined(rig, small.key)
        assert rig.pipeline.index.links_of([small.id])[small.id].original == copy.id
    finally:
        other.pipeline.close()


# The real stack -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promoting(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, str]]:
    """A quarantining deployment on a Milvus Lite server the test reads too; a killed worker's messages come
    back within seconds."""
    milvus, uri = stack.start_milvus("milvus-promotion")
    env = {
        "DEDUP_MILVUS_URI": uri,
        "DEDUP_TASK_TIMEOUT_S": "5",
        "DEDUP_RETRY_BACKOFF_MAX_S": "1",
        "DEDUP_VISIBILITY_TIMEOUT_S": "11",
    }
    try:
        with deploy(stack, tmp_path_factory.mktemp("promoting"), db=11, action=Action.QUARANTINE, env=env) as d:
            yield d, uri
    finally:
        stack.stop_service(milvus)


def _upload_group(d: Deployment, prefix: str, picture: str) -> tuple[bytes, ObjectEvent, ObjectEvent, ObjectEvent]:
    data = jpeg(photo(picture))
    events = d.upload_bytes({f"{prefix}o/{picture}.jpg": data, f"{prefix}d/{picture}-copy.jpg": data})
    events += d.upload_bytes({f"{prefix}d/{picture}-small.jpg": jpeg(resized(photo(picture)))})
    d.deliver(events)
    outcomes = {key: o.status.value for key, o in d.outcomes(events).items()}
    original, copy, small = events
    assert outcomes == {original.key: "unique", copy.key: "duplicate", small.key: "duplicate"}
    return data, original, copy, small


def _back(d: Deployment, event: ObjectEvent, data: bytes) -> bool:
    info = d.storage.stat(BUCKET, event.key)
    return (
        info is not None
        and d.storage.sha256(BUCKET, event.key) == _sha(data)
        and d.storage.get_tags(BUCKET, event.key).get("dedup-promoted") == "original_removed"
        and d.drained()
    )


def test_deleting_an_original_on_the_real_stack_brings_its_copy_back(
    promoting: tuple[Deployment, str], prefix: str
) -> None:
    d, uri = promoting
    data, original, copy, small = _upload_group(d, prefix, "rocket.jpg")
    d.storage.remove(BUCKET, original.key)
    d.deliver([ObjectEvent(BUCKET, original.key, next_time_ms())], name="s3:ObjectRemoved:Delete")
    wait_until(lambda: _back(d, copy, data), 120, "the copy back at its key, promoted", interval=0.3)
    assert d.storage.stat(BUCKET, small.key) is None
    index = Index.connect(uri, collection="image_dedup")
    try:
        assert index.links_of([small.id])[small.id].original == copy.id
        [group] = load_page(index, Filters.parse({"prefix": prefix})).groups  # what the gallery shows
        assert (group.original, group.promoted_from) == (copy.id, original.id)
        assert [dup.id for dup in group.duplicates] == [small.id]
    finally:
        index.close()
    d.wait_for_metric('dedup_promoted_total{job="worker"}', 1, at_least=True)


@pytest.mark.parametrize(
    ("kill_at", "picture"),
    [("deciding again from its quarantined copy", "camera.png"), ("copied back from quarantine", "moon.png")],
)
def test_a_worker_killed_mid_promotion_is_finished_by_the_next_one(
    promoting: tuple[Deployment, str], prefix: str, kill_at: str, picture: str, tmp_path: Path
) -> None:
    """SIGKILL as soon as the worker logs a step of the promotion (deciding from the copy, before the index and
    the copy-back; the copy-back verified, before the re-decision is acknowledged), start a new worker: exactly
    one verified object at the key, the other duplicate following it."""
    d, uri = promoting
    data, original, copy, small = _upload_group(d, prefix, picture)
    d.storage.remove(BUCKET, original.key)
    d.deliver([ObjectEvent(BUCKET, original.key, next_time_ms())], name="s3:ObjectRemoved:Delete")

    def reached() -> bool:
        return any(copy.id in line and kill_at in line for line in d.worker.log_text().splitlines())

    wait_until(reached, 120, kill_at, interval=0.01)
    d.worker.kill()
    d.worker.start()
    wait_until(lambda: _back(d, copy, data), 180, "the copy back at its key, promoted", interval=0.3)
    assert len(d.storage.versions(BUCKET, copy.key)) <= 1
    wait_until(d.drained, 120, "the queue to drain", interval=0.3)
    assert d.storage.stat(BUCKET, small.key) is None
    quarantine = Actions(d.storage, Action.QUARANTINE, quarantine_bucket=d.quarantine_bucket)
    assert len(d.storage.versions(d.quarantine_bucket, quarantine_key(BUCKET, copy.key))) == 1  # moved once
    kept = quarantine.find_copy(BUCKET, copy.key)
    assert kept is not None
    assert kept.info.metadata[META_SHA256] == _sha(data)
    index = Index.connect(uri, collection="image_dedup")
    try:
        assert index.stored([copy.id])[copy.id][0] == _sha(data)
        assert index.links_of([small.id])[small.id].original == copy.id
    finally:
        index.close()


def test_promote_is_the_default_and_keep_a_setting() -> None:
    assert load_settings(buckets=(BUCKET,)).on_original_removed is OnOriginalRemoved.PROMOTE
    assert load_settings(buckets=(BUCKET,), on_original_removed="keep").on_original_removed is OnOriginalRemoved.KEEP


def test_a_quarantined_duplicate_decided_again_as_similar_comes_back_as_the_original_it_is(
    stack: LocalStack, index: Index, prefix: str
) -> None:
    # Real weights by name and the default semantic threshold: semantic-only matches are similars, never moved.
    rig = build(stack, index, SameEmbedding(), model_weights="imagenet", action=Action.QUARANTINE)
    try:
        gravel = rig.upload(f"{prefix}gravel.jpg", jpeg(photo("gravel.png")))
        original = rig.upload(f"{prefix}astronaut.jpg", jpeg(photo("astronaut.png")))
        small_data = jpeg(resized(photo("astronaut.png")))
        small = rig.upload(f"{prefix}astronaut-small.jpg", small_data)
        statuses = [rig.pipeline.process(e).status for e in (gravel, original, small)]
        assert statuses == [Status.UNIQUE, Status.SIMILAR, Status.DUPLICATE]  # perceptual beats semantic
        assert _quarantined(rig, small.key)
        _remove(rig, original)
        settle(rig)
        # Decided again from its copy it only resembles gravel: a similar is an original, so it comes back.
        assert rig.storage.sha256(BUCKET, small.key) == _sha(small_data)
        tags = rig.tags(small.key)
        assert (tags["dedup-status"], tags["dedup-of"], tags["dedup-promoted"]) == (
            "similar",
            gravel.id,
            "original_removed",
        )
        assert index.stored([small.id])[small.id][0] == _sha(small_data)
        assert index.links_of([small.id])[small.id].action == "suggest"
        assert rig.pipeline.process(small).status is Status.SIMILAR  # its event replayed: still in place
        assert rig.tags(small.key)["dedup-promoted"] == "original_removed"
    finally:
        rig.pipeline.close()
