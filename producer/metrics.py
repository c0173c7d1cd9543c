"""The producer's Prometheus metrics (webhook, SQS consumer and backfill).

==================================================  ==============================================================
metric                                              meaning
==================================================  ==============================================================
``dedup_events_received_total{source}``             records received (webhook, sqs) or objects listed (backfill)
``dedup_events_enqueued_total{source,task}``        tasks placed on the broker (task: process, remove)
``dedup_events_ignored_total{reason}``              not enqueued: event_type, bucket_not_allowed
``dedup_enqueue_failures_total{source}``            requests/chunks that could not reach the broker
``dedup_webhook_requests_total{code}``              webhook answers by HTTP status
``dedup_sqs_messages_total{outcome}``               SQS messages settled and deleted: enqueued, test_event,
                                                    dead_lettered
``dedup_sqs_receive_failures_total``                failed ReceiveMessage calls (the consumer pauses, retries)
==================================================  ==============================================================

The webhook's and the SQS consumer's ``/metrics`` also carry the queue's depth, read from Redis on each scrape
(:mod:`producer.queue_depth`).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.registry import Collector

RECEIVED = Counter("dedup_events_received_total", "Events received by the producer", ["source"])
ENQUEUED = Counter("dedup_events_enqueued_total", "Tasks placed on the broker", ["source", "task"])
IGNORED = Counter("dedup_events_ignored_total", "Events not enqueued, by reason", ["reason"])
ENQUEUE_FAILURES = Counter("dedup_enqueue_failures_total", "Failed attempts to reach the broker", ["source"])
WEBHOOK_REQUESTS = Counter("dedup_webhook_requests_total", "Webhook answers by HTTP status", ["code"])
SQS_MESSAGES = Counter("dedup_sqs_messages_total", "SQS messages settled and deleted, by outcome", ["outcome"])
SQS_RECEIVE_FAILURES = Counter("dedup_sqs_receive_failures_total", "Failed SQS ReceiveMessage calls")


def serve(port: int, host: str, collectors: Iterable[Collector] = ()) -> None:
    """Expose ``/metrics`` (port 0: don't), with ``collectors`` added to it. Only the producer's metrics: the
    worker's live in another process."""
    if port:
        for collector in collectors:
            REGISTRY.register(collector)
        start_http_server(port, addr=host)


def initialise(source: str) -> None:
    """Create the label combinations at zero so that rates see the series from the start."""
    RECEIVED.labels(source=source)
    ENQUEUE_FAILURES.labels(source=source)
    for task in ("process", "remove"):
        ENQUEUED.labels(source=source, task=task)
    for reason in ("event_type", "bucket_not_allowed"):
        IGNORED.labels(reason=reason)


def initialise_sqs() -> None:
    """The SQS consumer's outcomes at zero."""
    for outcome in ("enqueued", "test_event", "dead_lettered"):
        SQS_MESSAGES.labels(outcome=outcome)
