"""The per-message policy around the pipeline, with real Redis and S3: poison, retries, giving up."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import NoReturn

import pytest
from prometheus_client import REGISTRY

from tests.helpers import BUCKET
from tests.rig import Rig, build
from tooling.localstack import LocalStack, free_port
from tooling.samples import jpeg, photo
from worker.delivery import DEAD_LETTERS_KEY, Deliveries
from worker.embedding import Embedder
from worker.index import Index
from worker.messages import ObjectEvent
from worker.runtime import Runtime
from worker.storage import Storage, make_client

pytestmark = pytest.mark.integration

DB = 5


class RetriedError(Exception):
    def __init__(self, exc: Exception, countdown: float) -> None:
        super().__init__(f"retry in {countdown:.1f} s: {exc}")
        self.exc = exc
        self.countdown = countdown


def retry(exc: Exception, countdown: float) -> NoReturn:
    raise RetriedError(exc, countdown)


def runtime_for(stack: LocalStack, rig: Rig) -> Runtime:
    stack.redis(DB).flushdb()
    deliveries = Deliveries(stack.redis(DB), max_deliveries=3, ttl_s=60)
    return Runtime(rig.pipeline.settings, rig.pipeline, deliveries)


@pytest.fixture
def healthy(stack: LocalStack, index: Index, embedder: Embedder) -> Iterator[tuple[Runtime, Rig]]:
    rig = build(stack, index, embedder, max_retries=2, retry_backoff_max_s=4)
    yield runtime_for(stack, rig), rig
    rig.pipeline.close()


def test_a_finished_message_leaves_no_delivery_count(
    stack: LocalStack, healthy: tuple[Runtime, Rig], prefix: str
) -> None:
    runtime, rig = healthy
    event = rig.upload(f"{prefix}a.jpg", jpeg(photo("astronaut.png")))
    task_id = str(uuid.uuid4())
    result = runtime.run_process(event, task_id=task_id, retries=0, retry=retry)
    assert result == {"id": event.id, "status": "unique"}
    assert stack.redis(DB).keys("dedup:deliveries:*") == []


def test_accepted_events_and_re_decisions_are_counted_apart(healthy: tuple[Runtime, Rig], prefix: str) -> None:
    runtime, rig = healthy

    def counted(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"outcome": "unique", "kind": "none"}) or 0.0

    event = rig.upload(f"{prefix}a.jpg", jpeg(photo("camera.png")))
    images, redecided = counted("dedup_images_total"), counted("dedup_redecided_total")
    runtime.run_process(event, task_id=str(uuid.uuid4()), retries=0, retry=retry)
    sent_back = replace(event, redecision="superseded")
    runtime.run_process(sent_back, task_id=str(uuid.uuid4()), retries=0, retry=retry)
    assert (counted("dedup_images_total"), counted("dedup_redecided_total")) == (images + 1, redecided + 1)


def test_a_message_that_runs_again_after_a_lost_acknowledgement_is_counted_once(
    healthy: tuple[Runtime, Rig], prefix: str
) -> None:
    runtime, rig = healthy
    event = rig.upload(f"{prefix}a.jpg", jpeg(photo("rocket.jpg")))
    images = REGISTRY.get_sample_value("dedup_images_total", {"outcome": "unique", "kind": "none"}) or 0.0
    task_id = str(uuid.uuid4())
    first = runtime.run_process(event, task_id=task_id, retries=0, retry=retry)
    again = runtime.run_process(event, task_id=task_id, retries=0, retry=retry)  # the broker redelivered it
    assert first == again == {"id": event.id, "status": "unique"}
    assert REGISTRY.get_sample_value("dedup_images_total", {"outcome": "unique", "kind": "none"}) == images + 1


def test_a_message_that_keeps_coming_back_is_poison(
    stack: LocalStack, healthy: tuple[Runtime, Rig], prefix: str
) -> None:
    runtime, rig = healthy
    event = rig.upload(f"{prefix}a.jpg", jpeg(photo("coffee.png")))
    task_id = str(uuid.uuid4())
    for _ in range(3):  # three deliveries that never finished (the worker died each time)
        runtime.deliveries.start(task_id, 0)
    result = runtime.run_process(event, task_id=task_id, retries=0, retry=retry)
    assert (result["status"], result["reason"]) == ("error", "poison")
    assert rig.tags(event.key) == {"dedup-status": "error", "dedup-reason": "poison"}
    [letter] = [json.loads(x) for x in stack.redis(DB).lrange(DEAD_LETTERS_KEY, 0, -1)]
    assert (letter["reason"], letter["kwargs"]) == ("poison", event.to_kwargs())


def test_transient_failures_retry_with_backoff_then_give_up_to_the_dead_letters(
    stack: LocalStack, index: Index, embedder: Embedder, prefix: str
) -> None:
    unreachable = Storage(make_client(f"127.0.0.1:{free_port()}", "a", "b", timeout_s=2), max_bytes=1 << 20)
    rig = build(stack, index, embedder, storage=unreachable, max_retries=2, retry_backoff_max_s=4)
    runtime = runtime_for(stack, rig)
    event = ObjectEvent(BUCKET, f"{prefix}a.jpg", 1)
    try:
        for attempt in range(2):
            with pytest.raises(RetriedError) as caught:
                runtime.run_process(event, task_id="t", retries=attempt, retry=retry)
            assert "s3" in str(caught.value.exc)
            assert 0 <= caught.value.countdown <= 4
        result = runtime.run_process(event, task_id="t", retries=2, retry=retry)
    finally:
        rig.pipeline.close()
    assert (result["status"], result["reason"]) == ("error", "retries_exhausted")
    [letter] = [json.loads(x) for x in stack.redis(DB).lrange(DEAD_LETTERS_KEY, 0, -1)]
    assert (letter["task"], letter["reason"]) == ("dedup.process", "retries_exhausted")
    assert letter["kwargs"] == event.to_kwargs()
    assert stack.redis(DB).keys("dedup:deliveries:*") == []
