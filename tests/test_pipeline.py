"""The pipeline in-process, on real components: moto/minio S3, Milvus Lite, the real (random-weight) model.

These check the glue between the stages — what the worker does around the decision core — without a queue.
The same paths run under a real Celery worker in test_service.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import pytest
from PIL import Image, ImageOps
from prometheus_client import REGISTRY

from tests.helpers import BUCKET, next_time_ms
from tests.rig import Rig, SameEmbedding, build, store_count
from tooling.eval.sources import distinct_images
from tooling.localstack import LocalStack, free_port
from tooling.samples import brightened, jpeg, photo, png, resized
from worker import metrics
from worker.actions import quarantine_key
from worker.config import Action
from worker.decision import Kind, Status
from worker.delivery import Deliveries
from worker.embedding import Embedder
from worker.errors import TransientError
from worker.index import Index, milvus_literal_list
from worker.messages import ObjectEvent
from worker.milvus import unused_vector
from worker.outcome import Outcome
from worker.runtime import Runtime
from worker.storage import Storage, make_client

pytestmark = pytest.mark.integration


@pytest.fixture
def rig(stack: LocalStack, index: Index, embedder: Embedder) -> Iterator[Rig]:
    built = build(stack, index, embedder)
    yield built
    built.pipeline.close()


@pytest.fixture
def quarantining(stack: LocalStack, index: Index, embedder: Embedder) -> Iterator[Rig]:
    built = build(stack, index, embedder, action=Action.QUARANTINE)
    yield built
    built.pipeline.close()


def test_a_resized_copy_is_tagged_as_a_perceptual_duplicate(rig: Rig, prefix: str) -> None:
    original = rig.upload(f"{prefix}cat.jpg", jpeg(photo("chelsea.png")))
    copy = rig.upload(f"{prefix}cat-small.jpg", jpeg(resized(photo("chelsea.png"))))
    assert rig.pipeline.process(original).status is Status.UNIQUE
    outcome = rig.pipeline.process(copy)
    assert (outcome.status, outcome.original, outcome.kind) == (Status.DUPLICATE, original.id, Kind.PERCEPTUAL)
    assert rig.tags(copy.key)["dedup-of"] == original.id
    assert rig.tags(original.key) == {"dedup-status": "unique"}
    assert rig.pipeline.index.event_times([original.id, copy.id]) == {original.id: original.event_time_ms}


def test_an_exact_copy_of_an_indexed_original_skips_the_model(rig: Rig, prefix: str) -> None:
    data = jpeg(photo("rocket.jpg"))
    original, copy = rig.upload(f"{prefix}rocket.jpg", data), rig.upload(f"{prefix}rocket-again.jpg", data)
    skipped = metrics.EMBEDDINGS_SKIPPED._value.get()
    assert rig.pipeline.process(original) == Outcome.unique()
    assert metrics.EMBEDDINGS_SKIPPED._value.get() == skipped
    outcome = rig.pipeline.process(copy)
    assert (outcome.status, outcome.original, outcome.kind) == (Status.DUPLICATE, original.id, Kind.EXACT)
    assert metrics.EMBEDDINGS_SKIPPED._value.get() == skipped + 1
    # Its own redelivered original is no "earlier copy": it goes through the model and stays the original.
    assert rig.pipeline.process(original) == Outcome.unique()
    assert metrics.EMBEDDINGS_SKIPPED._value.get() == skipped + 1


def test_the_same_event_twice_gives_the_same_outcome_and_never_a_self_match(rig: Rig, prefix: str) -> None:
    original = rig.upload(f"{prefix}a.jpg", jpeg(photo("coffee.png")))
    copy = rig.upload(f"{prefix}b.jpg", jpeg(photo("coffee.png"), 60))
    first = [rig.pipeline.process(original), rig.pipeline.process(copy)]
    again = [rig.pipeline.process(original), rig.pipeline.process(copy)]
    assert first == again
    assert first[0] == Outcome.unique()
    assert rig.sent_back == []


def test_an_earlier_image_arriving_late_sends_the_later_original_back(rig: Rig, prefix: str) -> None:
    early_time = next_time_ms()
    later = rig.upload(f"{prefix}later.jpg", jpeg(photo("rocket.jpg")))
    earlier = rig.upload(f"{prefix}earlier.jpg", jpeg(resized(photo("rocket.jpg"))), event_time_ms=early_time)
    assert rig.pipeline.process(later).status is Status.UNIQUE
    assert rig.pipeline.process(earlier).status is Status.UNIQUE
    assert rig.sent_back == [ObjectEvent(BUCKET, later.key, later.event_time_ms, redecision="superseded")]
    redecided = rig.pipeline.process(rig.sent_back[0])
    assert (redecided.status, redecided.original) == (Status.DUPLICATE, earlier.id)
    assert rig.tags(later.key)["dedup-status"] == "duplicate"
    assert rig.pipeline.index.event_times([later.id, earlier.id]) == {earlier.id: early_time}


def settle(rig: Rig) -> None:
    """Process what was sent back, as the queue would, until nothing is."""
    while rig.sent_back:
        rig.pipeline.process(rig.sent_back.pop(0))


def test_duplicates_of_a_superseded_original_follow_it_to_the_earlier_one(rig: Rig, prefix: str) -> None:
    early_time = next_time_ms()
    later = rig.upload(f"{prefix}later.jpg", jpeg(photo("page.png")))
    copy = rig.upload(f"{prefix}copy.jpg", jpeg(photo("page.png"), 70))
    earlier = rig.upload(f"{prefix}earlier.jpg", jpeg(resized(photo("page.png"))), event_time_ms=early_time)
    rig.pipeline.process(later)
    assert rig.pipeline.process(copy).original == later.id  # decided before the earlier image was seen
    rig.pipeline.process(earlier)
    settle(rig)
    for event in (later, copy):
        again = rig.pipeline.process(event)  # settled: deciding once more changes nothing
        assert (again.status, again.original) == (Status.DUPLICATE, earlier.id)
        assert rig.tags(event.key)["dedup-of"] == earlier.id
    assert rig.sent_back == []
    assert rig.pipeline.index.dependents([earlier.id]) == {later.id: later.event_time_ms, copy.id: copy.event_time_ms}
    assert rig.pipeline.index.dependents([later.id]) == {}


def test_removing_an_original_makes_the_earliest_duplicate_the_new_one(rig: Rig, prefix: str) -> None:
    original = rig.upload(f"{prefix}o.jpg", jpeg(photo("text.png")))
    first = rig.upload(f"{prefix}first.jpg", jpeg(photo("text.png"), 60))
    second = rig.upload(f"{prefix}second.jpg", jpeg(resized(photo("text.png"))))
    for event in (original, first, second):
        rig.pipeline.process(event)
    rig.storage.remove(BUCKET, original.key)
    rig.pipeline.remove(ObjectEvent(BUCKET, original.key, next_time_ms()))
    assert sorted(e.key for e in rig.sent_back) == sorted([first.key, second.key])
    settle(rig)
    assert rig.tags(first.key) == {"dedup-status": "unique"}
    assert rig.tags(second.key)["dedup-of"] == first.id


def test_an_overwritten_key_is_decided_afresh(rig: Rig, prefix: str) -> None:
    cat = rig.upload(f"{prefix}cat.jpg", jpeg(photo("chelsea.png")))
    key = f"{prefix}k.jpg"
    assert rig.pipeline.process(rig.upload(key, jpeg(photo("moon.png")))).status is Status.UNIQUE
    overwritten = rig.pipeline.process(rig.upload(key, jpeg(brightened(photo("chelsea.png")))))
    assert overwritten.status is Status.UNIQUE  # the cat uploaded under k.jpg is later than cat.jpg: but cat.jpg
    # was never processed, so k.jpg is the first cat the index has seen.
    cat_outcome = rig.pipeline.process(cat)
    assert cat_outcome.status is Status.UNIQUE  # cat.jpg is earlier: it stays an original ...
    assert [e.key for e in rig.sent_back] == [key]  # ... and the later k.jpg goes back for a new decision
    assert rig.pipeline.process(rig.sent_back[0]).original == cat.id


def test_semantic_stage_takes_part_only_with_an_explicit_threshold(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    # Random weights make every pair look alike (cosine ≈ 0.998): a good probe of the plumbing, not of quality.
    default = build(stack, index, embedder, perceptual_threshold=None)
    a = default.upload(f"{prefix}a.jpg", jpeg(photo("astronaut.png")))
    b = default.upload(f"{prefix}b.jpg", jpeg(photo("gravel.png")))
    assert [default.pipeline.process(e).status for e in (a, b)] == [Status.UNIQUE, Status.UNIQUE]
    default.pipeline.close()

    explicit = build(stack, index, embedder, perceptual_threshold=None, semantic_threshold=0.9)
    c = explicit.upload(f"{prefix}c.jpg", jpeg(photo("horse.png")))
    outcome = explicit.pipeline.process(c)
    explicit.pipeline.close()
    assert outcome.status is Status.DUPLICATE
    assert outcome.kind is Kind.SEMANTIC
    assert outcome.original in {a.id, b.id}
    assert outcome.score is not None
    assert outcome.score >= 0.9
    assert explicit.tags(c.key)["dedup-kind"] == "semantic"


def test_a_corrupt_image_is_an_error_and_spares_its_batch_mates(rig: Rig, prefix: str) -> None:
    events = [
        rig.upload(f"{prefix}good.jpg", jpeg(photo("coins.png"))),
        rig.upload(f"{prefix}bad.jpg", b"\xff\xd8\xff garbage"),
        rig.upload(f"{prefix}good-copy.jpg", jpeg(photo("coins.png"))),
    ]
    with ThreadPoolExecutor(3) as pool:
        good, bad, copy = pool.map(rig.pipeline.process, events)
    assert good.status is Status.UNIQUE
    assert (bad.status, bad.reason) == (Status.ERROR, "undecodable")
    assert (copy.status, copy.kind) == (Status.DUPLICATE, Kind.EXACT)
    assert rig.tags(f"{prefix}bad.jpg") == {"dedup-status": "error", "dedup-reason": "undecodable"}


def test_a_missing_object_is_an_error_outcome(rig: Rig, prefix: str) -> None:
    outcome = rig.pipeline.process(ObjectEvent(BUCKET, f"{prefix}never-uploaded.jpg", next_time_ms()))
    assert (outcome.status, outcome.reason) == (Status.ERROR, "not_found")


def test_removal_forgets_the_original_only_once_it_is_really_gone(rig: Rig, prefix: str) -> None:
    event = rig.upload(f"{prefix}gone.jpg", jpeg(photo("ihc.png")))
    rig.pipeline.process(event)
    rig.pipeline.remove(ObjectEvent(BUCKET, event.key, next_time_ms()))  # stale, or an old version: it exists
    assert rig.pipeline.index.event_times([event.id]) == {event.id: event.event_time_ms}
    rig.storage.remove(BUCKET, event.key)
    rig.pipeline.remove(ObjectEvent(BUCKET, event.key, event.event_time_ms - 1))  # older than the upload
    assert rig.pipeline.index.event_times([event.id]) == {event.id: event.event_time_ms}
    rig.pipeline.remove(ObjectEvent(BUCKET, event.key, next_time_ms()))
    assert rig.pipeline.index.event_times([event.id]) == {}


def test_a_replayed_or_repeated_upload_keeps_the_originals_place(rig: Rig, prefix: str) -> None:
    data = jpeg(photo("gravel.png"))
    first = rig.upload(f"{prefix}g.jpg", data)
    rig.pipeline.process(first)
    stale = ObjectEvent(BUCKET, first.key, first.event_time_ms - 1000, etag=first.etag)  # an older event
    again = rig.upload(first.key, data)  # the same bytes uploaded again, later
    for event in (stale, again):
        assert rig.pipeline.process(event) == Outcome.unique()
        assert rig.pipeline.index.event_times([first.id]) == {first.id: first.event_time_ms}


def test_an_event_older_than_the_bytes_it_finds_orders_them_by_their_upload(rig: Rig, prefix: str) -> None:
    uploaded_at_ms = time.time() * 1000
    uploaded = rig.upload(f"{prefix}k.jpg", jpeg(photo("brick.png")))
    stale = ObjectEvent(BUCKET, uploaded.key, 1_000, etag="etag-of-an-earlier-upload")
    rig.pipeline.process(stale)
    [stored] = rig.pipeline.index.event_times([uploaded.id]).values()
    assert abs(stored - uploaded_at_ms) < 5_000  # S3's Last-Modified (to the second), not the stale 1_000


class DeletedBeforeTagging(Storage):
    """Real S3, and a user who deletes the object just as the worker is about to tag it."""

    def get_tags(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        self.remove(bucket, key)
        return super().get_tags(bucket, key, version_id)


def test_an_object_deleted_after_its_decision_leaves_no_original_behind(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    rig = build(stack, index, embedder, storage=DeletedBeforeTagging(stack.storage().client, max_bytes=1 << 30))
    try:
        event = rig.upload(f"{prefix}brief.jpg", jpeg(photo("cell.png")))
        outcome = rig.pipeline.process(event)
        assert (outcome.status, outcome.reason) == (Status.ERROR, "not_found")
        assert index.event_times([event.id]) == {}
    finally:
        rig.pipeline.close()


def shared_stores(stack: LocalStack, counted: bool, collection: str) -> dict[str, Any]:
    """``build`` arguments for pipelines that count their stores in one Redis key (as workers do), or not."""
    return {"stores": store_count(stack, collection)} if counted else {}


@pytest.mark.parametrize("counted", [False, True], ids=["always-rechecking", "counting-stores"])
def test_concurrent_workers_on_near_identical_images_end_with_one_original(
    stack: LocalStack, engines_index: Index, embedder: Embedder, prefix: str, counted: bool
) -> None:
    """Two pipelines (two decision threads) share one index and race, round after round; counting their stores
    lets a batch skip its re-check only when the other stored nothing meanwhile."""
    index = engines_index  # Milvus Lite, then a Milvus server
    first = build(stack, index, embedder, **shared_stores(stack, counted, prefix))
    second = build(stack, index, embedder, **shared_stores(stack, counted, prefix))
    try:
        for round_ in range(8):
            a = first.upload(f"{prefix}{round_}-a.jpg", jpeg(photo("hubble_deep_field.jpg")))
            b = second.upload(f"{prefix}{round_}-b.jpg", jpeg(resized(photo("hubble_deep_field.jpg"), 0.6)))
            start = threading.Barrier(2)

            def race(rig: Rig, event: ObjectEvent, start: threading.Barrier = start) -> Outcome:
                start.wait()
                return rig.pipeline.process(event)

            with ThreadPoolExecutor(2) as pool:
                outcomes = list(pool.map(race, (first, second), (a, b)))
            for rig in (first, second):  # deliver what was sent back, as the queue would
                while rig.sent_back:
                    rig.pipeline.process(rig.sent_back.pop())
            stored = index.event_times([a.id, b.id])
            assert stored == {a.id: a.event_time_ms}, f"round {round_}: originals {stored}, outcomes {outcomes}"
            assert first.tags(a.key)["dedup-status"] == "unique"
            assert second.tags(b.key)["dedup-of"] == a.id
            index.discard([(a.id, a.event_time_ms)])  # next round starts from an empty index
    finally:
        first.pipeline.close()
        second.pipeline.close()


class StoresMeanwhile:
    """The real index, except that right after the first search another worker's decision runs (``meanwhile``):
    what the first search missed is there when the worker re-checks its originals."""

    def __init__(self, index: Index, meanwhile: Callable[[], Any] | None) -> None:
        self._index, self.meanwhile = index, meanwhile
        self.searches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def neighbours(self, batch: Any, within: Any = None) -> Any:
        self.searches += 1
        found = self._index.neighbours(batch, within)
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return found


@pytest.mark.parametrize("counted", [False, True], ids=["always-rechecking", "counting-stores"])
def test_batch_mates_of_an_original_that_yields_are_decided_again(
    stack: LocalStack, engines_index: Index, embedder: Embedder, prefix: str, counted: bool
) -> None:
    """b and c share a batch: b is its original and c its duplicate, until the re-check finds a, stored by another
    worker in the meantime and earlier than b. b yields; c, which pointed at b, is sent back and ends at a. With
    counted stores, a's store is what makes the batch re-check."""
    index = engines_index  # Milvus Lite, then a Milvus server
    picture = photo("coffee.png")
    other = build(stack, index, embedder, **shared_stores(stack, counted, prefix))
    a = other.upload(f"{prefix}a.jpg", jpeg(picture))
    meanwhile = StoresMeanwhile(index, lambda: other.pipeline.process(a))
    rig = build(stack, meanwhile, embedder, batch_wait_ms=1000, **shared_stores(stack, counted, prefix))  # type: ignore[arg-type]
    try:
        b = rig.upload(f"{prefix}b.jpg", jpeg(resized(picture, 0.8)))
        c = rig.upload(f"{prefix}c.jpg", jpeg(resized(picture, 0.6)))
        with ThreadPoolExecutor(2) as pool:  # one batch: both wait for the same decide call
            first = list(pool.map(rig.pipeline.process, (b, c)))
        assert [o.original for o in first] == [a.id, b.id]  # b yielded; c was decided against b
        assert [e.id for e in rig.sent_back] == [c.id]
        while rig.sent_back:
            rig.pipeline.process(rig.sent_back.pop())
        assert index.event_times([a.id, b.id, c.id]) == {a.id: a.event_time_ms}
        assert rig.tags(b.key)["dedup-of"] == rig.tags(c.key)["dedup-of"] == a.id
    finally:
        rig.pipeline.close()
        other.pipeline.close()


def test_a_batch_whose_originals_nobody_stored_alongside_skips_the_recheck(
    stack: LocalStack, engines_index: Index, embedder: Embedder, prefix: str
) -> None:
    """One search per batch when the store count shows no other store in between; two when another worker's
    store came between this batch's reading and its own store."""
    index = engines_index  # Milvus Lite, then a Milvus server
    other = store_count(stack, prefix)
    searching = StoresMeanwhile(index, None)
    rig = build(stack, searching, embedder, **shared_stores(stack, True, prefix))  # type: ignore[arg-type]
    skipped = REGISTRY.get_sample_value("dedup_rechecks_total", {"result": "skipped"}) or 0.0
    try:
        first = rig.pipeline.process(rig.upload(f"{prefix}a.jpg", jpeg(photo("coffee.png"))))
        assert first.status is Status.UNIQUE
        assert searching.searches == 1
        assert REGISTRY.get_sample_value("dedup_rechecks_total", {"result": "skipped"}) == skipped + 1

        searching.meanwhile = lambda: other.alone_since(other.read())  # another worker's store, counted
        second = rig.pipeline.process(rig.upload(f"{prefix}b.jpg", jpeg(photo("astronaut.png"))))
        assert second.status is Status.UNIQUE
        assert searching.searches == 3  # this batch searched twice
    finally:
        rig.pipeline.close()


# Quarantine ----------------------------------------------------------------------------------------------------


class CorruptingCopies(Storage):
    """Real S3, but every copy lands with other bytes (a copy that went wrong on the way)."""

    def copy(self, *, bucket: str, key: str, **_: Any) -> None:
        self.put(bucket, key, b"not the bytes that were decided on")


def test_quarantine_moves_a_verified_copy_and_its_redelivery_finds_it(quarantining: Rig, prefix: str) -> None:
    rig = quarantining
    original = rig.upload(f"{prefix}o.jpg", jpeg(photo("camera.png")))
    dup = rig.upload(f"{prefix}dup.jpg", jpeg(photo("camera.png"), 70))
    rig.pipeline.process(original)
    outcome = rig.pipeline.process(dup)
    assert rig.storage.stat(BUCKET, dup.key) is None
    copy = rig.storage.stat("quarantine", quarantine_key(BUCKET, dup.key))
    assert copy is not None
    assert copy.metadata["dedup-source"] == dup.id
    assert copy.metadata["dedup-of"] == original.id
    assert rig.storage.get_tags("quarantine", quarantine_key(BUCKET, dup.key))["dedup-status"] == "duplicate"
    assert rig.pipeline.process(dup) == outcome  # redelivered after the delete: same outcome, no error
    assert rig.tags(original.key) == {"dedup-status": "unique"}  # originals stay, tagged


def test_a_key_too_long_to_keep_in_quarantine_metadata_still_finds_its_copy(quarantining: Rig, prefix: str) -> None:
    rig = quarantining
    original = rig.upload(f"{prefix}o.jpg", jpeg(photo("coffee.png")))
    long_key = prefix + "y" * (1000 - len(prefix)) + ".jpg"  # the metadata keeps only its digest
    dup = rig.upload(long_key, jpeg(photo("coffee.png"), 70))
    rig.pipeline.process(original)
    outcome = rig.pipeline.process(dup)
    assert (outcome.status, outcome.original) == (Status.DUPLICATE, original.id)
    assert rig.storage.stat(BUCKET, dup.key) is None
    assert rig.pipeline.actions.recorded(dup) == outcome
    assert rig.pipeline.process(dup) == outcome  # redelivered after the delete


def test_a_second_duplicate_under_the_same_key_never_overwrites_the_first_quarantined_copy(
    quarantining: Rig, prefix: str
) -> None:
    rig = quarantining
    rig.pipeline.process(rig.upload(f"{prefix}o.jpg", jpeg(photo("moon.png"))))
    first_bytes, second_bytes = jpeg(photo("moon.png"), 70), jpeg(resized(photo("moon.png")), 80)
    first = rig.upload(f"{prefix}k.jpg", first_bytes)
    rig.pipeline.process(first)
    second = rig.upload(f"{prefix}k.jpg", second_bytes)  # re-uploaded after the first was quarantined
    rig.pipeline.process(second)
    target = quarantine_key(BUCKET, first.key)
    kept = [rig.storage.fetch("quarantine", target, v).data for v in rig.storage.versions("quarantine", target)]
    assert sorted(kept) == sorted([first_bytes, second_bytes])
    redelivered = rig.pipeline.process(first)  # its source is gone: it finds its own copy among the versions
    assert (redelivered.status, redelivered.original) == (Status.DUPLICATE, f"{BUCKET}/{prefix}o.jpg")


class FailingFirstDelete(Storage):
    """Real S3, but the first delete of a source fails, as if the worker died between copy and delete."""

    failed = False

    def remove(self, bucket: str, key: str, version_id: str | None = None) -> None:
        if bucket == BUCKET and not self.failed:
            self.failed = True
            raise TransientError("s3", "connection reset before the delete")
        super().remove(bucket, key, version_id)


def test_a_quarantine_retried_after_its_copy_reuses_that_copy(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    rig = build(
        stack,
        index,
        embedder,
        action=Action.QUARANTINE,
        storage=FailingFirstDelete(stack.storage().client, max_bytes=1 << 30),
    )
    try:
        original = rig.upload(f"{prefix}o.jpg", jpeg(photo("astronaut.png")))
        dup = rig.upload(f"{prefix}dup.jpg", jpeg(photo("astronaut.png"), 70))
        rig.pipeline.process(original)
        with pytest.raises(TransientError):
            rig.pipeline.process(dup)
        target = quarantine_key(BUCKET, dup.key)
        assert len(rig.storage.versions("quarantine", target)) == 1
        assert rig.storage.stat(BUCKET, dup.key) is not None  # copied, not yet deleted

        outcome = rig.pipeline.process(dup)  # the retry
        assert (outcome.status, outcome.original) == (Status.DUPLICATE, original.id)
        assert len(rig.storage.versions("quarantine", target)) == 1, "one copy, not two"
        assert rig.storage.stat(BUCKET, dup.key) is None
    finally:
        rig.pipeline.close()


def test_quarantine_never_deletes_a_source_whose_copy_does_not_verify(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    bad_storage = CorruptingCopies(stack.storage().client, max_bytes=1 << 30)
    rig = build(stack, index, embedder, action=Action.QUARANTINE, storage=bad_storage)
    try:
        picture = dict(distinct_images())["motorcycle_left-tile1.png"]  # new to this index
        original = rig.upload(f"{prefix}o.jpg", jpeg(picture))
        dup_bytes = jpeg(picture, 70)
        dup = rig.upload(f"{prefix}dup.jpg", dup_bytes)
        rig.pipeline.process(original)
        with pytest.raises(TransientError) as caught:
            rig.pipeline.process(dup)
        assert caught.value.reason == "quarantine_verify"
        assert rig.storage.fetch(BUCKET, dup.key).data == dup_bytes
    finally:
        rig.pipeline.close()


def test_quarantine_into_a_missing_bucket_fails_transiently_and_keeps_the_source(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    rig = build(stack, index, embedder, action=Action.QUARANTINE, quarantine_bucket="no-such-quarantine")
    rig.storage.client.remove_bucket(bucket_name="no-such-quarantine")
    try:
        original = rig.upload(f"{prefix}o.jpg", jpeg(photo("grass.png")))
        dup = rig.upload(f"{prefix}dup.jpg", jpeg(photo("grass.png"), 70))
        rig.pipeline.process(original)
        with pytest.raises(TransientError, match="NoSuchBucket"):
            rig.pipeline.process(dup)
        assert rig.storage.stat(BUCKET, dup.key) is not None
    finally:
        rig.pipeline.close()


class TagWritesFail(Storage):
    """Real S3 for everything but tag writes, which go to a port where nothing listens."""

    def __init__(self, working: Storage) -> None:
        super().__init__(working.client, max_bytes=working.max_bytes)
        self.dead = Storage(make_client(f"127.0.0.1:{free_port()}", "a", "b", timeout_s=2), max_bytes=1)

    def set_tags(self, bucket: str, key: str, tags: Mapping[str, str], version_id: str | None = None) -> None:
        self.dead.set_tags(bucket, key, tags, version_id)


def test_an_error_outcome_that_cannot_be_tagged_is_retried_not_acknowledged(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    rig = build(stack, index, embedder, storage=TagWritesFail(stack.storage()))
    try:
        broken = rig.upload(f"{prefix}broken.jpg", b"not an image")
        with pytest.raises(TransientError, match="s3"):
            rig.pipeline.process(broken)
    finally:
        rig.pipeline.close()


def test_low_information_pictures_are_noted_and_never_matched_and_a_mirrored_copy_is(rig: Rig, prefix: str) -> None:
    counted = REGISTRY.get_sample_value("dedup_low_information_total", {"stage": "perceptual"}) or 0.0
    red = rig.upload(f"{prefix}red.png", png(Image.new("RGB", (320, 240), (220, 20, 20))))
    blue = rig.upload(f"{prefix}blue.png", png(Image.new("RGB", (320, 240), (20, 40, 220))))
    assert rig.pipeline.process(red) == Outcome.unique(notes=("low-information",))
    assert rig.pipeline.process(blue) == Outcome.unique(notes=("low-information",))  # no structure: not a copy
    assert rig.tags(blue.key) == {"dedup-status": "unique", "dedup-note": "low-information"}
    assert REGISTRY.get_sample_value("dedup_low_information_total", {"stage": "perceptual"}) == counted + 2

    picture = dict(distinct_images())["motorcycle_left-tile0.png"]  # used by no other test of this index
    original = rig.upload(f"{prefix}bike.jpg", jpeg(picture))
    mirrored = rig.upload(f"{prefix}bike-mirror.jpg", jpeg(ImageOps.mirror(picture)))
    assert rig.pipeline.process(original).status is Status.UNIQUE
    outcome = rig.pipeline.process(mirrored)
    assert (outcome.status, outcome.kind, outcome.original) == (Status.DUPLICATE, Kind.PERCEPTUAL, original.id)
    assert rig.pipeline.index.event_times([original.id, mirrored.id]) == {original.id: original.event_time_ms}


def run(runtime: Runtime, event: ObjectEvent) -> dict[str, Any]:
    return runtime.run_process(event, task_id=str(uuid.uuid4()), retries=0, retry=_no_retry)


def _no_retry(exc: Exception, countdown: float) -> NoReturn:
    raise AssertionError(f"retried: {exc}")


def images_counted(outcome: str, kind: str) -> float:
    return REGISTRY.get_sample_value("dedup_images_total", {"outcome": outcome, "kind": kind}) or 0.0


def semantic_rig(stack: LocalStack, index: Index, **overrides: Any) -> tuple[Rig, Runtime]:
    """Real weights (by name; the stub embeds), quarantine mode, a runtime that counts outcomes."""
    rig = build(stack, index, SameEmbedding(), model_weights="imagenet", action=Action.QUARANTINE, **overrides)
    stack.redis(6).flushdb()
    return rig, Runtime(rig.pipeline.settings, rig.pipeline, Deliveries(stack.redis(6), max_deliveries=3, ttl_s=60))


def test_a_semantic_only_match_under_the_default_threshold_is_similar_tagged_and_never_moved(
    stack: LocalStack, index: Index, prefix: str
) -> None:
    rig, runtime = semantic_rig(stack, index)
    assert rig.pipeline.settings.semantic_suggests_only
    first = rig.upload(f"{prefix}astronaut.jpg", jpeg(photo("astronaut.png")))
    other = rig.upload(f"{prefix}gravel.jpg", jpeg(photo("gravel.png")))  # another picture, the same embedding
    similar_before = images_counted("similar", "semantic")
    duplicate_before = images_counted("duplicate", "semantic")
    try:
        assert run(runtime, first)["status"] == "unique"
        result = run(runtime, other)
        assert (result["status"], result["original"], result["kind"]) == ("similar", first.id, "semantic")
        tags = rig.tags(other.key)  # still at its key: tagged, not moved
        assert {k: tags[k] for k in ("dedup-status", "dedup-of", "dedup-kind")} == {
            "dedup-status": "similar",
            "dedup-of": first.id,
            "dedup-kind": "semantic",
        }
        assert float(tags["dedup-score"]) >= 0.9
        assert rig.pipeline.actions.find_copy(BUCKET, other.key) is None
        assert images_counted("similar", "semantic") == similar_before + 1
        assert images_counted("duplicate", "semantic") == duplicate_before
        link = rig.pipeline.index.links_of([other.id])[other.id]  # the review gallery shows it, as a suggestion
        assert (link.original, link.kind, link.action) == (first.id, "semantic", "suggest")
        # Not a confirmed duplicate: it stays an original, so an exact copy of it is a duplicate of it (and moved).
        assert other.id in rig.pipeline.index.event_times([other.id])
        copy = rig.upload(f"{prefix}gravel-again.jpg", jpeg(photo("gravel.png")))
        again = run(runtime, copy)
        assert (again["status"], again["original"], again["kind"]) == ("duplicate", other.id, "exact")
        assert rig.storage.stat(BUCKET, copy.key) is None
        assert rig.pipeline.actions.find_copy(BUCKET, copy.key) is not None
    finally:
        rig.pipeline.close()


def test_an_explicit_semantic_threshold_makes_the_same_match_a_duplicate_that_is_moved(
    stack: LocalStack, index: Index, prefix: str
) -> None:
    rig, runtime = semantic_rig(stack, index, semantic_threshold=0.9)
    assert not rig.pipeline.settings.semantic_suggests_only
    first = rig.upload(f"{prefix}astronaut.jpg", jpeg(photo("astronaut.png")))
    other = rig.upload(f"{prefix}gravel.jpg", jpeg(photo("gravel.png")))
    duplicate_before = images_counted("duplicate", "semantic")
    try:
        assert run(runtime, first)["status"] == "unique"
        result = run(runtime, other)
        assert (result["status"], result["original"], result["kind"]) == ("duplicate", first.id, "semantic")
        assert rig.storage.stat(BUCKET, other.key) is None  # quarantined
        assert rig.pipeline.actions.find_copy(BUCKET, other.key) is not None
        assert images_counted("duplicate", "semantic") == duplicate_before + 1
        assert rig.pipeline.index.links_of([other.id])[other.id].action == "quarantine"
        assert rig.pipeline.index.event_times([other.id]) == {}  # a duplicate is no original
    finally:
        rig.pipeline.close()


@pytest.fixture
def perceptual_only(stack: LocalStack, lite_uri: str) -> Iterator[Rig]:
    """A pipeline without a model (DEDUP_MODEL_WEIGHTS=none) on a perceptual-only collection."""
    index = Index.connect(lite_uri, collection="image_dedup", dim=None)
    # Four images make a full batch, and the wait is long enough for all four to arrive: batch-mates, always.
    built = build(stack, index, None, model_weights="none", batch_size=4, batch_wait_ms=3000)
    yield built
    built.pipeline.close()
    index.close()


def test_perceptual_only_decides_a_batch_at_once_on_exact_and_perceptual_signals(
    perceptual_only: Rig, prefix: str
) -> None:
    rig = perceptual_only
    assert (rig.pipeline.embed_stage, rig.pipeline.exact_stage, rig.pipeline.decode_stage) == (None, None, None)
    cat = photo("chelsea.png")
    events = [
        rig.upload(f"{prefix}cat.jpg", jpeg(cat)),
        rig.upload(f"{prefix}cat-small.jpg", jpeg(resized(cat), 70)),
        rig.upload(f"{prefix}cat-again.jpg", jpeg(cat)),
        rig.upload(f"{prefix}rocket.jpg", jpeg(photo("rocket.jpg"))),
    ]
    skipped = metrics.EMBEDDINGS_SKIPPED._value.get()
    with ThreadPoolExecutor(len(events)) as pool:  # one decide batch: batch-mates are compared with each other
        original, small, again, other = pool.map(rig.pipeline.process, events)
    assert original == other == Outcome.unique()  # decided without an embedding, never deferred for one
    assert (small.status, small.original, small.kind) == (Status.DUPLICATE, events[0].id, Kind.PERCEPTUAL)
    assert (again.status, again.original, again.kind) == (Status.DUPLICATE, events[0].id, Kind.EXACT)
    assert metrics.EMBEDDINGS_SKIPPED._value.get() == skipped  # no model, so none skipped either
    # Later copies of what is now indexed: decided against the index alone.
    late = rig.upload(f"{prefix}cat-late.jpg", jpeg(resized(cat, 0.6), 80))
    outcome = rig.pipeline.process(late)
    assert (outcome.status, outcome.original, outcome.kind) == (Status.DUPLICATE, events[0].id, Kind.PERCEPTUAL)
    ids = milvus_literal_list([e.id for e in [*events, late]])
    rows = rig.pipeline.index.query("image_dedup", f"id in {ids}", ["id", "embedding"])
    stored = {row["id"]: [float(v) for v in row["embedding"]] for row in rows}
    assert stored == {events[0].id: unused_vector(), events[3].id: unused_vector()}


def test_a_pipeline_has_a_model_exactly_when_the_settings_ask_for_one(
    stack: LocalStack, index: Index, embedder: Embedder
) -> None:
    with pytest.raises(ValueError, match="unless perceptual-only"):
        build(stack, index, None)  # random weights: a model is needed
    with pytest.raises(ValueError, match="unless perceptual-only"):
        build(stack, index, embedder, model_weights="none")
