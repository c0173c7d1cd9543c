"""Celery tasks and worker lifecycle hooks. Thin: the work happens in :mod:`worker.runtime`.

The worker builds its :class:`~worker.runtime.Runtime` (model, Milvus, S3, metrics server) once, in
``worker_init``, before it consumes anything; if that fails the worker exits instead of taking messages.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, NoReturn

from celery import Task, shared_task, signals
from celery.exceptions import Reject

from worker import metrics
from worker.messages import PROCESS_TASK, REMOVE_TASK, ObjectEvent
from worker.runtime import Runtime

log = logging.getLogger(__name__)

SUPPORTED_POOLS = {"threads", "solo"}
#: Celery loggers that log every task at INFO; they log at DEBUG level only (DEDUP_LOG_LEVEL=DEBUG).
QUIET_BELOW_DEBUG = ("celery.worker.strategy", "celery.app.trace")

_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the worker runtime is not started (run this task in `celery -A worker worker`)")
    return _runtime


def _retry(task: Task, exc: Exception, countdown: float) -> NoReturn:
    try:
        raise task.retry(exc=exc, countdown=countdown)
    except Reject as rejected:
        # Celery could not publish the retry and would drop the message (Reject without requeue): keep it.
        log.error("could not schedule a retry (%s); returning the message to the queue", rejected.reason)
        raise Reject(rejected.reason, requeue=True) from exc


# max_retries=None: Celery's own limit (3 by default) would raise the error instead of retrying, and the message
# would be acknowledged as failed — lost. The runtime counts retries against DEDUP_MAX_RETRIES itself.
@shared_task(bind=True, name=PROCESS_TASK, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def process_object(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Decide one created/overwritten object and tag or quarantine it."""
    return runtime().run_process(
        ObjectEvent.from_kwargs(kwargs),
        task_id=self.request.id,
        retries=self.request.retries,
        retry=lambda exc, countdown: _retry(self, exc, countdown),
    )


@shared_task(bind=True, name=REMOVE_TASK, acks_late=True, max_retries=None)  # type: ignore[untyped-decorator]
def remove_object(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Forget a removed object."""
    return runtime().run_remove(
        ObjectEvent.from_kwargs(kwargs),
        task_id=self.request.id,
        retries=self.request.retries,
        retry=lambda exc, countdown: _retry(self, exc, countdown),
    )


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _start_runtime(sender: Any, **_: Any) -> None:
    global _runtime  # noqa: PLW0603 - one runtime per worker process, built once at start
    pool = _pool_name(sender.pool_cls)
    settings = sender.app.settings
    logging.getLogger("worker").setLevel(settings.log_level)
    if settings.log_level != "DEBUG":  # Celery's two lines per task ("received", "succeeded"): our outcome line says
        for name in QUIET_BELOW_DEBUG:  # more, once; at hundreds of images/s the logging lock is a cost of its own
            logging.getLogger(name).setLevel(logging.WARNING)
    if pool not in SUPPORTED_POOLS:
        log.critical(
            "pool %r is not supported: run `celery -A worker worker` (threads pool, the default here) or --pool "
            "solo. The model, Milvus Lite and the metrics registry must live in one process.",
            pool,
        )
        raise SystemExit(2)
    try:
        _runtime = Runtime.build(settings, sender.app, threads=int(sender.concurrency or 1))
    except Exception as exc:
        log.critical("cannot start the worker: %s", exc, exc_info=exc)
        raise SystemExit(1) from exc
    # What is loaded by now (torch, Celery, the model, the clients: millions of objects) lives as long as the
    # process; frozen, it is no longer scanned by every full collection that the per-image garbage triggers.
    gc.collect()
    gc.freeze()
    metrics.serve(settings.metrics_port, settings.metrics_host)


def _pool_name(pool_cls: Any) -> str:
    """``--pool`` as given (an alias) or as resolved (a class in ``celery.concurrency.<name>``)."""
    name = pool_cls if isinstance(pool_cls, str) else pool_cls.__module__.rsplit(".", 1)[-1]
    return {"thread": "threads", "processes": "prefork"}.get(name, name)


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_runtime(**_: Any) -> None:
    global _runtime  # noqa: PLW0603
    if _runtime is not None:
        _runtime.close()
        _runtime = None
