"""The Celery application: Redis broker, late acknowledgement, one message per object, threads pool.

Why these settings:

* ``task_acks_late`` + ``worker_prefetch_multiplier=1`` — a message is acknowledged only after its own image's
  outcome is recorded, and comes back if the worker dies (Redis redelivers after ``visibility_timeout``).
* ``worker_pool="threads"`` with ``worker_concurrency = 2 × DEDUP_BATCH_SIZE`` — one process holds the model
  (CUDA must not be forked), Milvus Lite (one process per file) and the metrics registry; enough task threads
  to fill one batch while the previous one is on the model.
* ``visibility_timeout`` from ``DEDUP_VISIBILITY_TIMEOUT_S``, validated at start to exceed the longest time a
  message can legitimately stay unacknowledged (two task timeouts plus the longest retry countdown, which a
  worker holds as a reserved, unacknowledged message).
* ``unacked_restore_throttle=1`` — a dead worker's messages are restored within 10 s of their visibility
  timeout expiring, not 100 s.
* :mod:`worker.broker` — kombu's Redis transport, patched so that a broker restart does not stop the worker.
* ``worker_cancel_long_running_tasks_on_connection_loss=False``, deliberately: the threads pool cannot kill a
  running job, so after a broker reconnect tasks run to completion; should Redis redeliver one meanwhile, its
  decision and action are idempotent.

    >>> app = create_app(load_settings())
    >>> app.send_task(PROCESS_TASK, kwargs=event.to_kwargs())
"""

from __future__ import annotations

import sys
import warnings

from celery import Celery

from worker import broker
from worker.config import ConfigError, Settings, load_settings

broker.install()

# Celery warns on every reconnect that this default changes in 6.0; our explicit False is a decision (above).
warnings.filterwarnings("ignore", message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss")


class DedupCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries the service's settings."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__("dedup", broker=settings.broker_url, **kwargs)
        self.settings = settings


def create_app(settings: Settings, *, include_tasks: bool = True) -> DedupCelery:
    app = DedupCelery(settings, include=["worker.tasks"] if include_tasks else [])
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_pool="threads",
        worker_concurrency=2 * settings.batch_size,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for expired unacknowledged messages every 10 s (kombu's default scans every 100 s).
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
    )
    return app


def app_from_environment() -> DedupCelery:
    """The app for ``celery -A worker worker``: settings from the environment, or a one-line error and exit 2."""
    try:
        return create_app(load_settings())
    except ConfigError as exc:
        print(f"image-dedup-worker: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
