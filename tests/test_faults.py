"""Faults injected into real processes on loopback: a broker restart, S3 and Milvus going away for half a
minute, a worker SIGKILLed amid its quarantines, several workers racing on near-identical images, replayed
events and overwrites, odd keys. After each, the accounting check (tests/accounting.py) proves every accepted
event ended in exactly one outcome, counted once, with nothing deleted that was not safely quarantined.

These run on a stack of their own: Redis with an append-only file (so that a restart keeps the queue, as in
production) and a Milvus Lite gRPC server that can be stopped apart from the workers, or shared by several.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from PIL import Image

from tests.accounting import Ledger, Sent, uploaded
from tests.deployment import deploy
from tests.helpers import BUCKET, next_time_ms
from tests.proxy import Proxy
from tooling.eval.sources import distinct_images
from tooling.localstack import LocalStack, Service, wait_until
from tooling.samples import Expect, Sample, jpeg, photo, resized, upload_set
from worker import imaging
from worker.config import DEFAULT_PERCEPTUAL_THRESHOLD, Action
from worker.decision import GUARD, Kind, Signals, Status, perceptual_similarity
from worker.fingerprint import fingerprint
from worker.index import Index
from worker.messages import ObjectEvent
from worker.outcome import Outcome

pytestmark = pytest.mark.integration

OUTAGE_S = 30
# Enough retries to outlast an outage: Celery's full jitter draws whole seconds in [0, cap], 1.5 s on average, and
# 40 retries once ran out after 42 s on a loaded machine (30 s down plus Milvus Lite's restart): 100 leave room.
PATIENT = {"DEDUP_MAX_RETRIES": "100", "DEDUP_RETRY_BACKOFF_MAX_S": "3"}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("faulty"), buckets=(BUCKET,), durable_redis=True) as stack:
        yield stack


@pytest.fixture
def milvus(faulty: LocalStack, request: pytest.FixtureRequest) -> Iterator[tuple[Service, str]]:
    service, uri = faulty.start_milvus(f"milvus-{request.node.name[:60]}")
    yield service, uri
    faulty.stop_service(service)


def index_at(uri: str) -> Index:
    return Index.connect(uri, collection="image_dedup")


def decodable(prefix: str, *names: str, unrelated: str = "gravel.png") -> list[Sample]:
    """Originals and their copies (exact and perceptual) and one unrelated photo; nothing corrupt."""
    return [s for s in upload_set(prefix, list(names), [unrelated]) if s.expect.status != "error"]


def assert_as_expected(samples: list[Sample], outcomes: Mapping[str, Outcome]) -> None:
    wrong = {s.key: outcomes[s.key] for s in samples if not s.expect.matches(outcomes[s.key], BUCKET)}
    assert not wrong, wrong


def test_events_queued_across_a_redis_restart_all_finish(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    _, uri = milvus
    with deploy(faulty, tmp_path, db=1, env={"DEDUP_MILVUS_URI": uri}) as d:
        ledger = Ledger.open(d)
        d.worker.stop()  # nobody consumes: the events wait in the queue
        samples = decodable(prefix, "astronaut.png")
        sent = uploaded(d, samples)
        d.deliver([s.event for s in sent])
        redis = faulty.redis(d.db)
        assert redis.llen("dedup") == len(sent)

        faulty.restart(faulty.redis_service, down_s=2)
        assert redis.llen("dedup") == len(sent), "the queue must survive a broker restart"
        more = uploaded(d, decodable(f"{prefix}after/", "chelsea.png"))
        d.deliver([s.event for s in more])  # the webhook reconnects by itself

        d.worker.start()
        outcomes = ledger.check([*sent, *more], accepted=len(sent) + len(more), index=index_at(uri))
        assert_as_expected(samples, outcomes)


def test_a_redis_restart_while_the_worker_consumes_loses_nothing_and_counts_once(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    _, uri = milvus
    holding = {  # a long batch wait keeps every message delivered but unacknowledged during the restart
        "DEDUP_MILVUS_URI": uri,
        "DEDUP_BATCH_SIZE": "64",
        "DEDUP_BATCH_WAIT_MS": "3000",
        "DEDUP_TASK_TIMEOUT_S": "20",
        "DEDUP_RETRY_BACKOFF_MAX_S": "2",
        "DEDUP_VISIBILITY_TIMEOUT_S": "45",
    }
    with deploy(faulty, tmp_path, db=2, env=holding) as d:
        ledger = Ledger.open(d)
        samples = decodable(prefix, "coffee.png")
        sent = uploaded(d, samples)
        d.deliver([s.event for s in sent])
        redis = faulty.redis(d.db)
        wait_until(lambda: redis.hlen("unacked") == len(sent), 10, "every message delivered to the worker")
        faulty.restart(faulty.redis_service, down_s=2)
        outcomes = ledger.check(sent, accepted=len(sent), index=index_at(uri), timeout=150)
        assert_as_expected(samples, outcomes)
        assert d.worker.alive


def test_s3_then_milvus_unreachable_for_half_a_minute_delay_but_never_fail_events(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    milvus_service, uri = milvus
    with Proxy(faulty.s3_port) as s3:
        env = {**PATIENT, "DEDUP_MILVUS_URI": uri, "DEDUP_S3_ENDPOINT": f"127.0.0.1:{s3.port}"}
        with deploy(faulty, tmp_path, db=3, env=env) as d:
            ledger = Ledger.open(d)
            index = index_at(uri)

            samples = decodable(f"{prefix}s3/", "rocket.jpg")
            sent = uploaded(d, samples)
            s3.cut()
            d.deliver([s.event for s in sent])
            time.sleep(OUTAGE_S)
            assert all(d.actions.recorded(s.event) is None for s in sent), "nothing can be decided without S3"
            s3.restore()
            outcomes = ledger.check(sent, accepted=len(sent), index=index)
            assert_as_expected(samples, outcomes)
            assert d.query('dedup_retries_total{job="worker",reason="s3"}') > 0

            ledger = Ledger.open(d)
            later = decodable(f"{prefix}milvus/", "ihc.png", unrelated="brick.png")  # all new to the index
            more = uploaded(d, later)
            milvus_service.stop()
            d.deliver([s.event for s in more])
            time.sleep(OUTAGE_S)
            assert all(d.actions.recorded(s.event) is None for s in more), "nothing can be decided without Milvus"
            milvus_service.start()  # same port, same data; its collections come back released
            outcomes = ledger.check(more, accepted=len(more), index=index)
            assert_as_expected(later, outcomes)
            assert d.query('dedup_retries_total{job="worker",reason="milvus"}') > 0
            assert d.query('sum(dedup_errors_total{job="worker"})') == 0
            assert d.query('sum(dedup_dead_letters_total{job="worker"})') == 0


def test_a_worker_killed_while_quarantining_leaves_one_verified_copy_each(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    _, uri = milvus
    env = {
        "DEDUP_MILVUS_URI": uri,
        "DEDUP_BATCH_SIZE": "32",
        "DEDUP_BATCH_WAIT_MS": "1000",  # one batch: its duplicates are being quarantined side by side
        "DEDUP_TASK_TIMEOUT_S": "5",
        "DEDUP_RETRY_BACKOFF_MAX_S": "1",
        "DEDUP_VISIBILITY_TIMEOUT_S": "11",  # how soon the killed worker's messages come back
    }
    with deploy(faulty, tmp_path, db=7, action=Action.QUARANTINE, env=env) as d:
        ledger = Ledger.open(d)
        samples = decodable(prefix, "chelsea.png", "coffee.png", "astronaut.png")
        sent = uploaded(d, samples)
        d.deliver([s.event for s in sent])
        wait_until(lambda: "quarantined to" in d.worker.log_text(), 120, "a first duplicate quarantined", 0.01)
        d.worker.kill()  # SIGKILL amid the quarantines: copied, deleted, acknowledged or not, in any mix
        redis = faulty.redis(d.db)
        assert redis.hlen("unacked") > 0, "the kill must leave messages unacknowledged"

        d.worker.start()
        # One verified copy of each duplicate (none copied twice by a redelivery), every other object in
        # place. Not counted: the killed worker's counters died with it.
        outcomes = ledger.check(sent, accepted=None, index=index_at(uri))
        assert_as_expected(samples, outcomes)


RACE_ROUNDS = 12  # three fresh pictures a round: the 49 distinct sources allow 16


def racing_pictures() -> Iterator[tuple[str, Image.Image]]:
    """The harness's distinct pictures whose 0.7× copy the perceptual stage recognises (a two-tone silhouette is
    below its guard, docs/quality.md): this test is about racing workers, not about detection."""
    for name, picture in distinct_images():
        first = fingerprint(imaging.decode(jpeg(picture, 90), max_pixels=10**8))
        copy = fingerprint(imaging.decode(jpeg(resized(picture, 0.7), 80), max_pixels=10**8))
        a = Signals("a", 1, "a", first.dct, look=first.look)
        c = Signals("c", 2, "c", copy.dct, look=copy.look)
        found = perceptual_similarity(a, c)
        recognised = found is not None and found >= DEFAULT_PERCEPTUAL_THRESHOLD
        if recognised and GUARD.perceptual_ok(first.look) and GUARD.perceptual_ok(copy.look):
            yield name, picture


def test_workers_racing_on_near_identical_images_keep_exactly_one_original_per_group(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    _, uri = milvus
    env = {"DEDUP_MILVUS_URI": uri, "DEDUP_BATCH_SIZE": "2", "DEDUP_BATCH_WAIT_MS": "20"}
    shuffle = random.Random(5)
    with deploy(faulty, tmp_path, db=4, env=env, workers=2) as d:
        index = index_at(uri)
        pictures = racing_pictures()  # each round's pictures are new to the index
        for round_ in range(RACE_ROUNDS):
            ledger = Ledger.open(d)
            at = next_time_ms()  # "the same moment": one event time, so the key decides the order
            samples, groups = [], {}
            for name, picture in itertools.islice(pictures, 3):
                first = jpeg(picture, 90)
                group = [(f"{prefix}{round_}/{name}-a.jpg", first), (f"{prefix}{round_}/{name}-b.jpg", first)]
                group.append((f"{prefix}{round_}/{name}-c.jpg", jpeg(resized(picture, 0.7), 80)))
                groups[name] = [key for key, _ in group]
                samples += [Sample(key, data, "image/jpeg", Expect("unique")) for key, data in group]
            sent = [
                Sent(
                    ObjectEvent(BUCKET, s.key, at, etag=d.storage.put(BUCKET, s.key, s.data), size=len(s.data)), s.data
                )
                for s in samples
            ]
            burst = [s.event for s in sent]
            shuffle.shuffle(burst)
            d.deliver(burst)
            outcomes = ledger.check(sent, accepted=len(sent), index=index)
            for name, keys in groups.items():
                original = f"{BUCKET}/{keys[0]}"
                assert outcomes[keys[0]].status is Status.UNIQUE, (round_, name, outcomes[keys[0]])
                assert [outcomes[k].original for k in keys[1:]] == [original, original], (round_, name)
                assert [outcomes[k].kind for k in keys[1:]] == [Kind.EXACT, Kind.PERCEPTUAL]
        # Each worker holds at most 2 × DEDUP_BATCH_SIZE messages, so every burst of 9 is split between them.
        took_part = re.compile(r": (unique|duplicate of )")  # the outcome line each worker logs per message
        assert all(took_part.search(worker.log_text()) for worker in d.workers), "both workers must take part"


def test_replayed_events_and_an_overwrite_end_consistent(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    _, uri = milvus
    with deploy(faulty, tmp_path, db=5, env={"DEDUP_MILVUS_URI": uri}) as d:
        ledger = Ledger.open(d)
        samples = decodable(prefix, "grass.png")
        sent = uploaded(d, samples)
        events = [s.event for s in sent]
        d.deliver(events)
        d.deliver(events[::-1])  # MinIO retried every delivery, in any order
        # A copy overwritten with an unrelated photo: decided afresh, and its stale event replayed again.
        key = f"{prefix}grass-copy.jpg"
        new_bytes = jpeg(photo("cell.png"))
        overwrite = Sent(
            ObjectEvent(BUCKET, key, next_time_ms(), etag=d.storage.put(BUCKET, key, new_bytes)), new_bytes
        )
        stale = next(e for e in events if e.key == key)
        d.deliver([overwrite.event, stale])
        final = [s for s in sent if s.event.key != key] + [overwrite]
        outcomes = ledger.check(final, accepted=2 * len(events) + 2, index=index_at(uri))
        assert outcomes[key].status is Status.UNIQUE
        assert_as_expected([s for s in samples if s.key != key], outcomes)


def test_odd_keys_are_decided_and_quarantined_intact(
    faulty: LocalStack, tmp_path: Path, prefix: str, milvus: tuple[Service, str]
) -> None:
    _, uri = milvus
    longest = "x" * (1020 - len(f"{prefix}.jpg"))  # a 1020-byte key: <bucket>/<key> is over S3's 1024 bytes
    names = ["with space.jpg", "plus+sign.jpg", "100%25 %.jpg", "ünïcødé 写真.jpg", f"{longest}.jpg"]
    with deploy(faulty, tmp_path, db=6, action=Action.QUARANTINE, env={"DEDUP_MILVUS_URI": uri}) as d:
        ledger = Ledger.open(d)
        data = jpeg(photo("retina.jpg"))
        original = Sample(f"{prefix}original.jpg", data, "image/jpeg", Expect("unique"))
        copies = [Sample(f"{prefix}{n}", data, "image/jpeg", Expect("duplicate", original.key, "exact")) for n in names]
        sent = uploaded(d, [original])
        d.deliver([s.event for s in sent])
        d.outcomes([s.event for s in sent])
        sent += uploaded(d, copies)
        d.deliver([s.event for s in sent[1:]])
        outcomes = ledger.check(sent, accepted=len(sent), index=index_at(uri))
        assert_as_expected([original, *copies], outcomes)
