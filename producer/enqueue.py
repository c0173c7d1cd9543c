"""Put tasks on the broker, by name, so producers never import the worker's model code.

``send`` returns only once every task is on the broker (Redis LPUSH done), retrying a few times over a
couple of seconds; if the broker stays unreachable it raises :class:`EnqueueError` and the caller reports
failure (the webhook answers 503 so MinIO retries the notification).

    >>> enqueuer = Enqueuer(create_app(settings, include_tasks=False), queue=settings.queue, source="webhook")
    >>> enqueuer.send([(PROCESS_TASK, event)])
    1
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from producer import metrics
from worker.messages import ObjectEvent

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


class EnqueueError(RuntimeError):
    """The broker could not be reached; nothing after the failure was enqueued."""


class Enqueuer:
    def __init__(self, app: Celery, *, queue: str, source: str) -> None:
        self.app = app
        self.queue = queue
        self.source = source
        metrics.initialise(source)

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
