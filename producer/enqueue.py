"""Put tasks on the broker, by name, so producers never import the worker's model code.

``send`` returns only once every task is on the broker (Redis LPUSH done), retrying a few times over a
couple of seconds; if the broker stays unreachable it raises :class:`EnqueueError` and the caller reports
failure (the webhook answers 503 so MinIO retries the notification).

    >>> enqueuer = Enqueuer(create_app(settings, include_tasks=False), queue=settings.queue, source="webhook")
    >>> enqueuer.send([(PROCESS_TASK, event)])
    1
    >>> enqueuer.send_records(parse_notification(body), settings.bucket_allowed)  # what a notification asks for
    1
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from celery import Celery

from producer import metrics
from producer.events import Record
from worker.messages import ObjectEvent

log = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


class EnqueueError(RuntimeError):
    """The broker could not be reached; nothing after the failure was enqueued."""


class Enqueuer:
    def __init__(self, app: Celery, *, queue: str, source: str) -> None:
        self.app = app
        self.queue = queue
        self.source = source
        metrics.initialise(source)

    def send_records(self, records: Sequence[Record], bucket_allowed: Callable[[str], bool]) -> int:
        """Enqueue the tasks of a notification's records (webhook, SQS): events that are not new content or
        removals, and buckets not on the allow-list, are counted as ignored. Returns how many were sent."""
        metrics.RECEIVED.labels(source=self.source).inc(len(records))
        tasks = []
        for record in records:
            if record.task is None:
                metrics.IGNORED.labels(reason="event_type").inc()
            elif not bucket_allowed(record.event.bucket):
                metrics.IGNORED.labels(reason="bucket_not_allowed").inc()
                log.info("ignored %s on %s: bucket not in DEDUP_BUCKETS", record.name, record.event.id)
            else:
                tasks.append((record.task, record.event))
        return self.send(tasks)

    def send(self, tasks: Sequence[tuple[str, ObjectEvent]]) -> int:
        """Enqueue ``(task name, event)`` pairs over one broker connection; returns how many were sent."""
        if not tasks:
            return 0
        try:
            with self.app.producer_or_acquire() as producer:
                for name, event in tasks:
                    self.app.send_task(
                        name,
                        kwargs=event.to_kwargs(),
                        queue=self.queue,
                        producer=producer,
                        retry=True,
                        retry_policy=RETRY_POLICY,
                    )
                    metrics.ENQUEUED.labels(source=self.source, task=name.rsplit(".", 1)[-1]).inc()
        except Exception as exc:
            metrics.ENQUEUE_FAILURES.labels(source=self.source).inc()
            raise EnqueueError(f"broker unreachable: {type(exc).__name__}: {exc}") from exc
        return len(tasks)
