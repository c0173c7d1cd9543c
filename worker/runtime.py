"""What one worker process holds, and the delivery policy around each message.

:meth:`Runtime.build` connects everything at start, so a bad setting, missing weights or an incompatible
collection stop the worker before it takes a message. Perceptual-only (``DEDUP_MODEL_WEIGHTS=none``) it loads no
model, and does not import torch. :meth:`Runtime.run_process` wraps the pipeline with the
per-message policy:

* a message delivered more than ``DEDUP_MAX_DELIVERIES`` times without finishing is *poison*: ``error`` outcome,
  dead-lettered, acknowledged;
* a transient failure (or an unexpected bug) is retried with exponential backoff and full jitter, up to
  ``DEDUP_MAX_RETRIES``; after that the object gets an ``error`` outcome ``retries_exhausted`` and the message is
  dead-lettered — never silently dropped;
* every accepted event's outcome is logged and counted once in ``dedup_images_total``, even when its message
  runs twice after a lost acknowledgement (the actions are idempotent); objects the worker sends back to be
  decided again are counted in ``dedup_redecided_total`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import redis
from celery import Celery
from celery.utils.time import get_exponential_backoff_interval

from worker import lite, metrics
from worker.config import NO_MODEL, Action, Settings, env_name
from worker.decision import Status
from worker.delivery import Deliveries
from worker.errors import TransientError
from worker.index import Index
from worker.messages import PROCESS_TASK, REMOVE_TASK, ObjectEvent
from worker.outcome import Outcome
from worker.pipeline import Pipeline
from worker.storage import Storage, make_client
from worker.stores import Stores

if TYPE_CHECKING:
    from worker.embedding import Embedder

log = logging.getLogger(__name__)

#: ``retry(exc, countdown)`` re-publishes the message and raises (Celery's ``Task.retry``).
Retry = Callable[[Exception, float], NoReturn]


class Runtime:
    def __init__(self, settings: Settings, pipeline: Pipeline, deliveries: Deliveries) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.deliveries = deliveries

    @classmethod
    def build(cls, settings: Settings, app: Celery, *, threads: int) -> Runtime:
        settings.require_buckets()
        storage = Storage(
            make_client(
                settings.s3_endpoint,
                settings.s3_access_key,
                settings.s3_secret_key,
                secure=settings.s3_secure,
                region=settings.s3_region,
                pool_size=threads + 4,
            ),
            max_bytes=settings.max_image_bytes,
        )
        if settings.action is Action.QUARANTINE:  # versioned: no quarantined copy is ever overwritten
            storage.ensure_bucket(settings.quarantine_bucket, versioned=True)
        index = Index.connect(
            settings.milvus_uri,
            collection=settings.collection,
            token=settings.milvus_token,
            search_limit=settings.search_limit,
            dim=settings.embedding_dim,
        )
        if advice := lite.advice(index.engine(), index.count):  # counted only on Lite
            log.warning(advice)
        embedder = load_embedder(settings)

        def redecide(event: ObjectEvent) -> None:
            app.send_task(PROCESS_TASK, kwargs=event.to_kwargs(), queue=settings.queue)

        bookkeeping = redis.Redis.from_url(settings.broker_url)
        pipeline = Pipeline(
            settings,
            storage=storage,
            index=index,
            embedder=embedder,
            redecide=redecide,
            stores=Stores(bookkeeping, settings.collection),
        )
        deliveries = Deliveries(
            bookkeeping,
            max_deliveries=settings.max_deliveries,
            ttl_s=settings.visibility_timeout_s * (settings.max_deliveries + 1),
        )
        metrics.initialise()
        weights = (
            settings.model_weights if settings.model_weights in {"imagenet", "random", "noop", NO_MODEL} else "file"
        )
        device = NO_MODEL if embedder is None else str(embedder.device)
        metrics.WORKER_INFO.labels(device=device, weights=weights).set(1)
        metrics.INDEX_SIZE.set_function(pipeline.index_size)
        metrics.REVIEWS.set_source(pipeline.reviews.counts)
        log.info(
            "worker ready: action=%s, buckets=%s, thresholds perceptual=%s semantic=%s%s",
            settings.action.value,
            ",".join(settings.buckets),
            settings.perceptual_threshold,
            settings.effective_semantic_threshold,
            " (default, unmeasured: semantic matches are only tagged similar, never moved; set "
            "DEDUP_SEMANTIC_THRESHOLD after python -m tooling.eval)"
            if settings.semantic_suggests_only
            else "",
        )
        return cls(settings, pipeline, deliveries)

    def close(self) -> None:
        self.pipeline.close()
        self.pipeline.index.close()

    # Messages -------------------------------------------------------------------------------------------------

    def run_process(self, event: ObjectEvent, *, task_id: str, retries: int, retry: Retry) -> dict[str, Any]:
        deliveries = self.deliveries.start(task_id, retries)
        if self.deliveries.is_poison(deliveries):
            outcome = Outcome.error("poison", f"delivered {deliveries} times without finishing")
            self.pipeline.try_tag_error(event, outcome)
            self._dead_letter(PROCESS_TASK, event, outcome)
            return self._finish(event, outcome, task_id, retries)
        try:
            outcome = self.pipeline.process(event)
        except Exception as exc:
            failure = exc
        else:
            return self._finish(event, outcome, task_id, retries)
        self._retry_or_give_up(PROCESS_TASK, event, failure, task_id, retries, retry)
        outcome = Outcome.error("retries_exhausted", _describe(failure))
        self.pipeline.try_tag_error(event, outcome)
        return self._finish(event, outcome, task_id, retries)

    def run_remove(self, event: ObjectEvent, *, task_id: str, retries: int, retry: Retry) -> dict[str, Any]:
        try:
            self.pipeline.remove(event)
        except Exception as exc:
            self._retry_or_give_up(REMOVE_TASK, event, exc, task_id, retries, retry)
            return {"id": event.id, "removed": False}
        log.info("%s: removed from the index", event.id)
        return {"id": event.id, "removed": True}

    def _retry_or_give_up(
        self, task: str, event: ObjectEvent, exc: Exception, task_id: str, retries: int, retry: Retry
    ) -> None:
        """Retry (raises) while retries remain; otherwise dead-letter the message and return."""
        reason = exc.reason if isinstance(exc, TransientError) else "internal"
        if not isinstance(exc, TransientError):
            log.exception("%s: unexpected failure", event.id, exc_info=exc)
        self.deliveries.finish(task_id, retries)
        if retries < self.settings.max_retries:
            countdown = get_exponential_backoff_interval(
                factor=1, retries=retries, maximum=self.settings.retry_backoff_max_s, full_jitter=True
            )
            metrics.RETRIES.labels(reason=reason).inc()
            log.warning("%s: %s; retry %d in %.1f s", event.id, exc, retries + 1, countdown)
            retry(exc, countdown)
        log.error("%s: giving up after %d retries: %s", event.id, retries, exc)
        self._dead_letter(task, event, Outcome.error("retries_exhausted", _describe(exc)))

    def _dead_letter(self, task: str, event: ObjectEvent, outcome: Outcome) -> None:
        self.deliveries.dead_letter(task, event.to_kwargs(), outcome.reason or "", outcome.detail)
        metrics.DEAD_LETTERS.labels(reason=outcome.reason or "").inc()

    def _finish(self, event: ObjectEvent, outcome: Outcome, task_id: str, retries: int) -> dict[str, Any]:
        # One count per accepted event, even if its message runs again after a lost acknowledgement; decisions
        # the worker asked for itself are counted apart.
        if self.deliveries.finish_first(task_id, retries):
            counter = metrics.REDECIDED if event.redecision else metrics.IMAGES
            counter.labels(outcome=outcome.status.value, kind=outcome.kind_label).inc()
            if outcome.status is Status.ERROR:
                metrics.ERRORS.labels(reason=outcome.reason or "unknown").inc()
        else:
            log.info("%s: finished again (message %s ran twice); counted once", event.id, task_id)
        if outcome.status is Status.ERROR:
            log.warning("%s: error %s (%s)", event.id, outcome.reason, outcome.detail)
        elif outcome.status is Status.DUPLICATE:
            log.info("%s: duplicate of %s (%s, %.4f)", event.id, outcome.original, outcome.kind, outcome.score or 0)
        elif outcome.status is Status.SIMILAR:
            log.info(
                "%s: similar to %s (%s, %.4f), not moved", event.id, outcome.original, outcome.kind, outcome.score or 0
            )
        else:
            log.info("%s: unique", event.id)
        return {"id": event.id, **outcome.as_dict()}


def load_embedder(settings: Settings) -> Embedder | None:
    """The model (:class:`worker.embedding.Embedder`), or None perceptual-only: then neither it nor torch is
    loaded."""
    if settings.perceptual_only:
        log.info(
            "perceptual-only (%s=%s): no model loaded; exact and perceptual stages only, no embeddings stored",
            env_name("model_weights"),
            NO_MODEL,
        )
        return None
    from worker.embedding import Embedder

    return Embedder.load(
        settings.model_weights,
        settings.device,
        compile_mode=settings.compile_mode.value,
        batch_size=settings.batch_size,
    )


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
