"""Queue depth is read from the real Redis that Celery writes to: messages sent by the real producer code, at
several priorities, fetched without acknowledgement, dead-lettered; and a Redis that is down."""

from __future__ import annotations

import time

import pytest
import redis
from prometheus_client import CollectorRegistry

from producer.enqueue import Enqueuer
from producer.queue_depth import QueueDepthCollector, priority_lists, queue_depth_collector
from tests.helpers import BUCKET, next_time_ms
from tooling.localstack import LocalStack, free_port
from worker.celery_app import create_app
from worker.config import load_settings
from worker.delivery import DEAD_LETTERS_KEY
from worker.messages import PROCESS_TASK, ObjectEvent

pytestmark = pytest.mark.integration

DB = 11  # a Redis database of its own: no worker consumes it


def registry_with(collector: QueueDepthCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    """One scrape (one ``collect``), as ``{'name{label="value"}': value}``."""
    return {
        sample.name + "".join(f'{{{k}="{v}"}}' for k, v in sample.labels.items()): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_depth_counts_every_priority_list_unacked_and_dead_letters(stack: LocalStack) -> None:
    client = stack.redis(DB)
    client.flushdb()
    settings = load_settings(broker_url=stack.broker(DB), buckets=BUCKET)
    app = create_app(settings, include_tasks=False)
    registry = registry_with(queue_depth_collector(settings.broker_url, [settings.queue, "other"]))

    assert registry.get_sample_value("dedup_queue_up") == 1
    assert registry.get_sample_value("dedup_queue_depth", {"queue": "dedup"}) == 0
    assert registry.get_sample_value("dedup_queue_depth", {"queue": "other"}) == 0

    enqueuer = Enqueuer(app, queue=settings.queue, source="test")
    enqueuer.send([(PROCESS_TASK, ObjectEvent(BUCKET, f"k{i}.jpg", next_time_ms())) for i in range(3)])
    event = ObjectEvent(BUCKET, "urgent.jpg", next_time_ms())
    app.send_task(PROCESS_TASK, kwargs=event.to_kwargs(), queue=settings.queue, priority=7)
    # kombu put the prioritised message on a list of its own; the collector knows that list's name.
    assert {k for k in client.keys("dedup*") if client.type(k) == "list"} == {"dedup", priority_lists("dedup")[2]}
    assert registry.get_sample_value("dedup_queue_depth", {"queue": "dedup"}) == 4

    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(settings.queue)
        fetched = queue.get(timeout=5)  # delivered, not acknowledged: it moves to the unacked hash
        assert registry.get_sample_value("dedup_queue_depth", {"queue": "dedup"}) == 3
        assert registry.get_sample_value("dedup_queue_unacked") == 1
        fetched.ack()
        assert registry.get_sample_value("dedup_queue_unacked") == 0
        queue.close()

    assert registry.get_sample_value("dedup_dead_letter_depth") == 0
    client.lpush(DEAD_LETTERS_KEY, '{"task": "x"}', '{"task": "y"}')
    assert registry.get_sample_value("dedup_dead_letter_depth") == 2
    assert registry.get_sample_value("dedup_queue_read_errors_total") == 0
    client.flushdb()


def test_an_unreachable_redis_reports_down_and_never_fails_the_scrape() -> None:
    collector = queue_depth_collector(f"redis://127.0.0.1:{free_port()}/0", ["dedup"])
    registry = registry_with(collector)
    started = time.monotonic()
    for failed in (1, 2):
        # Depth unknown (absent), not 0: a dashboard must not show an empty queue while Redis is down.
        assert scrape(registry) == {"dedup_queue_read_errors_total": failed, "dedup_queue_up": 0}
    assert time.monotonic() - started < 3 * 2 * 2  # each read gives up within its timeout


def test_a_redis_that_stops_answering_is_reported_within_the_timeout(stack: LocalStack) -> None:
    client = redis.Redis.from_url(stack.broker(DB), socket_timeout=0.5)
    registry = registry_with(QueueDepthCollector(client, ["dedup"]))
    assert registry.get_sample_value("dedup_queue_up") == 1
    blocker = stack.redis(DB)
    blocker.client_pause(1500, all=True)  # Redis alive, answering nobody
    try:
        started = time.monotonic()
        assert registry.get_sample_value("dedup_queue_up") == 0
        assert time.monotonic() - started < 1.4
    finally:
        blocker.client_unpause()
    assert registry.get_sample_value("dedup_queue_up") == 1
