"""One object's way through the worker, with the two batched stages shared by all task threads.

::

    task thread (one per message)            shared batcher threads
    ─────────────────────────────            ─────────────────────────────────────────────
    download → decode → hash → preprocess
                          └──── submit ────▶ exact:  one SHA-256 query for whatever has gathered
                          ◀──── earlier? ───┘ (an exact copy of an earlier indexed original skips the model)
                          └──── submit ────▶ embed:  ResNet-50 on whatever has gathered
                          ◀──── vector ─────┘
                          └──── submit ────▶ decide: search Milvus → decide() → store originals
                                                     → re-check (Strong), unless no other worker stored
                                                       meanwhile (worker.stores) → let the later one yield
                          ◀──── decision ───┘
    act (tags / quarantine) → outcome

The decide stage is :class:`worker.decide_stage.BatchDecider`, which also forgets removed objects.

A quarantined duplicate sent back because its original was removed or overwritten has no object at its key: it
is decided from its quarantined copy's bytes, then promoted to original or left to follow its new one
(:mod:`worker.promotion`).

Many task threads download and decode while a batch is on the model, so I/O overlaps compute. Every message
waits only for its own image, so it is acknowledged on its own (per-message at-least-once).

With ``DEDUP_DECODE`` on the device (the default on CUDA), decoding is one more batched stage in front of the
others: the task thread reads a JPEG's header and submits it to ``decode``, which decodes whatever has gathered on
the model's device (:mod:`worker.device_decode`); other formats, and JPEGs the device refuses, decode with Pillow
in the task thread as before.

Perceptual-only (``DEDUP_MODEL_WEIGHTS=none``, no embedder) there is no model: no model input is made, the exact and
embed stages do not exist, and every image goes straight to ``decide`` (exact and perceptual signals only), which
never defers it. torch is not even imported.

    >>> pipeline = Pipeline(settings, storage=storage, index=index, embedder=embedder, redecide=enqueue)  # or None
    >>> pipeline.process(ObjectEvent("photos", "cat.jpg", event_time_ms=1732350000000))
    Outcome(status=<Status.UNIQUE: 'unique'>, ...)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from PIL import Image

from worker import imaging, metrics
from worker.actions import Actions
from worker.batcher import DynamicBatcher
from worker.config import DecodeMode, Settings
from worker.decide_stage import BatchDecider
from worker.decision import (
    Decision,
    Signals,
    Thresholds,
    Vector,
    abstaining_stages,
)
from worker.errors import PermanentError, TransientError
from worker.fingerprint import fingerprint
from worker.hashing import sha256_hex
from worker.index import Index
from worker.messages import ObjectEvent
from worker.outcome import Outcome
from worker.promotion import Pending, Promotion
from worker.storage import Blob, ObjectMissingError, Storage
from worker.stores import Stores
from worker.verdicts import Reviews

if TYPE_CHECKING:  # the model's modules import torch: perceptual-only, the worker never does
    import torch

    from worker import device_decode
    from worker.embedding import Embedder

log = logging.getLogger(__name__)

T = TypeVar("T")
In = TypeVar("In")
Out = TypeVar("Out")

DECODE_MIN_SIDE = imaging.DECODE_MIN_SIDE
INDEX_SIZE_EVERY_S = 2.0


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        storage: Storage,
        index: Index,
        embedder: Embedder | None,
        redecide: Callable[[ObjectEvent], None],
        stores: Stores | None = None,
    ) -> None:
        if (embedder is None) != settings.perceptual_only:
            raise ValueError("a pipeline has an embedder unless perceptual-only (DEDUP_MODEL_WEIGHTS=none)")
        self.settings = settings
        self.stores = stores  # None: every batch of new originals is re-checked
        self.storage = storage
        self.index = index
        self.embedder = embedder
        self.actions = Actions(storage, settings.action, quarantine_bucket=settings.quarantine_bucket)
        self.redecide = redecide
        self.reviews = Reviews(index)  # what reviewers restored is never a duplicate again
        self.promotion = Promotion(settings, storage=storage, index=index, actions=self.actions, reviews=self.reviews)
        self.thresholds = Thresholds(
            perceptual=settings.perceptual_threshold,
            semantic=settings.effective_semantic_threshold,
            semantic_suggests=settings.semantic_suggests_only,  # the default threshold: matches are suggestions
        )
        self.decider = BatchDecider(
            settings,
            index=index,
            reviews=self.reviews,
            thresholds=self.thresholds,
            redecide=redecide,
            stores=stores,
        )
        # The model's stages: embed, and exact (which lets an exact copy skip the model). None perceptual-only.
        self.embed_stage: DynamicBatcher[torch.Tensor, Vector] | None = None
        self.exact_stage: DynamicBatcher[Signals, bool] | None = None
        if embedder is not None:
            self.embed_stage = self._batcher(self._embed_batch, "embed")
            self.exact_stage = self._batcher(self._exact_batch, "exact", observed=False)
        self.decide_stage: DynamicBatcher[Signals, Decision | None] = self._batcher(self.decider.decide, "decide")
        # Decoding is CPU-bound: more at once than cores only multiplies memory (a 100 MP PNG is 300 MB decoded).
        self._decode_slots = threading.BoundedSemaphore(len(os.sched_getaffinity(0)) or 1)
        # JPEGs decoded in batches on the model's device (DEDUP_DECODE); None: every image decodes with Pillow.
        self.decode_stage: DynamicBatcher[device_decode.Plan, device_decode.Decoded | None] | None = None
        if embedder is not None and (
            settings.decode is DecodeMode.DEVICE
            or (settings.decode is DecodeMode.AUTO and embedder.device.type == "cuda")
        ):
            self.decode_stage = self._batcher(self._decode_batch, "decode")
            log.info("JPEGs decode in batches on %s (DEDUP_DECODE=%s)", embedder.device, settings.decode.value)
        self._index_size_at = float("-inf")
        self._index_size = 0
        imaging.configure(settings.max_image_pixels)

    def _batcher(
        self, handler: Callable[[list[In]], Sequence[Out | BaseException]], name: str, *, observed: bool = True
    ) -> DynamicBatcher[In, Out]:
        """A stage gathering up to ``DEDUP_BATCH_SIZE`` items for ``DEDUP_BATCH_WAIT_MS`` (``observed``: its
        batches' sizes in ``dedup_batch_size``)."""
        return DynamicBatcher(
            handler,
            max_size=self.settings.batch_size,
            max_wait_s=self.settings.batch_wait_ms / 1000,
            name=name,
            on_batch=metrics.BATCH_SIZE.labels(stage=name).observe if observed else None,
        )

    def close(self) -> None:
        if self.exact_stage is not None:
            self.exact_stage.close()
        if self.embed_stage is not None:
            self.embed_stage.close()
        self.decide_stage.close()
        if self.decode_stage is not None:
            self.decode_stage.close()

    # Per object (task threads) --------------------------------------------------------------------------------

    def process(self, event: ObjectEvent) -> Outcome:
        """Decide ``event``'s object and act on it. Permanent failures come back as an ``error`` outcome (tagged
        when the object still exists); :class:`TransientError` propagates so the task can retry."""
        if not self.settings.bucket_allowed(event.bucket):
            return Outcome.error("bucket_not_allowed", f"{event.bucket} is not in DEDUP_BUCKETS")
        try:
            return self._process(event)
        except PermanentError as exc:
            outcome = Outcome.error(exc.reason, exc.detail)
            if not isinstance(exc, ObjectMissingError):
                try:  # the outcome must be recorded before the message is acknowledged: a TransientError retries
                    self.actions.tag(event, outcome)
                except ObjectMissingError:
                    log.info("%s: gone before its error outcome could be tagged", event.id)
            return outcome

    def _process(self, event: ObjectEvent) -> Outcome:
        pending: Pending | None = None
        try:
            with metrics.timed("download"):
                blob = self.storage.fetch(event.bucket, event.key, event.version_id)
        except ObjectMissingError:
            found = self.promotion.pending(event)  # a quarantined duplicate whose original went?
            if isinstance(found, Outcome):
                return found
            if found is None:
                done = self.actions.already_quarantined(event)
                if done is not None:
                    log.info("%s: already quarantined by an earlier delivery", event.id)
                    return done
                raise
            pending, blob = found, found.blob
        image, pixels = self._decode(blob.data)
        with metrics.timed("hash"):
            sha256 = sha256_hex(blob.data)
            seen = fingerprint(image)
        del image
        signals = Signals(event.id, _event_time(event, blob), sha256, seen.dct, look=seen.look)
        decision = self._decide(signals, pixels)
        for stage in abstaining_stages(signals, self.thresholds):
            metrics.LOW_INFORMATION.labels(stage=stage.value).inc()
        outcome = _outcome(decision)
        if pending is not None:  # decided from its quarantined copy: promoted, or following its new original
            with metrics.timed("act"):
                return self.promotion.finish(event, pending, outcome)
        with metrics.timed("act"):
            try:
                applied = self.actions.apply(event, outcome, etag=blob.etag, sha256=sha256, version_id=blob.version_id)
            except ObjectMissingError:  # removed after its decision: forget it, as its removal event will
                self.decider.forget(event.id, signals.event_time_ms)
                raise
        metrics.TAGS_DROPPED.inc(len(applied.dropped_tags))
        return outcome

    def _decide(self, signals: Signals, pixels: torch.Tensor | None) -> Decision:
        """An image's decision: an exact copy of an earlier indexed original skips the model, every other image is
        decided with its embedding. Perceptual-only (no model input) every image is decided at once."""
        if self.embed_stage is None or self.exact_stage is None or pixels is None:
            decision = self._wait(self.decide_stage.submit(signals), "decide")  # never deferred: no embedding comes
        else:
            decision = None
            if self._wait(self.exact_stage.submit(signals), "exact"):  # an exact duplicate: the model can be skipped
                decision = self._wait(self.decide_stage.submit(signals), "decide")  # None: deferred after all
                if decision is not None:
                    metrics.EMBEDDINGS_SKIPPED.inc()
            if decision is None:
                signals = replace(signals, embedding=self._wait(self.embed_stage.submit(pixels), "embed"))
                decision = self._wait(self.decide_stage.submit(signals), "decide")
        if decision is None:  # decide_or_defer never defers an image with an embedding
            raise RuntimeError(f"{signals.id}: deferred although nothing more will come for it")
        return decision

    def _exact_batch(self, items: list[Signals]) -> list[bool]:
        """For each image, whether an earlier original with these very bytes is indexed: then the image is its
        duplicate whatever the model says, and goes to the decision without an embedding (rule 8 of
        :mod:`worker.decision`). One query for the batch, not one per image."""
        found = self.index.exact(item.sha256 for item in items)
        return [any(n.id != s.id and n.order < s.order for n in found.get(s.sha256, ())) for s in items]

    def try_tag_error(self, event: ObjectEvent, outcome: Outcome) -> None:
        """Tag an object with an error outcome when giving up on it: best-effort, the dead letter keeps the rest."""
        try:
            self.actions.tag(event, outcome)
        except (PermanentError, TransientError) as exc:
            log.warning("%s: could not tag error outcome %s: %s", event.id, outcome.reason, exc)

    def _wait(self, future: Future[T], stage: str) -> T:
        try:
            return future.result(timeout=self.settings.task_timeout_s)
        except FutureTimeout as exc:
            future.cancel()
            raise TransientError("timeout", f"{stage} took over {self.settings.task_timeout_s} s") from exc

    def _decode(self, data: bytes) -> tuple[Image.Image, torch.Tensor | None]:
        """The fingerprint's picture and the model input (None perceptual-only): from the device decode stage when
        it is on and takes this object (a JPEG in RGB or grey within the limits), else with Pillow in this thread."""
        stage = self.decode_stage
        if stage is not None:
            from worker import device_decode

            planned = device_decode.plan(data, max_pixels=self.settings.max_image_pixels, min_side=DECODE_MIN_SIDE)
            decoded = None if planned is None else self._wait(stage.submit(planned), "decode")
            if decoded is not None:  # None: not for the device, or the device could not decode it; Pillow may
                return decoded.picture, decoded.pixels
        with metrics.timed("decode"), self._decode_slots:
            image = imaging.decode(data, max_pixels=self.settings.max_image_pixels, min_side=DECODE_MIN_SIDE)
            pixels = None if self.embedder is None else _model_input(image)
        if stage is not None and pixels is not None:  # the batch-mates of device-decoded inputs, already there
            pixels = pixels.to(self._model_device)
        return image, pixels

    @property
    def _model_device(self) -> torch.device:
        """Where the model runs (asked only where there is one)."""
        if self.embedder is None:
            raise RuntimeError("perceptual-only: there is no model")
        return self.embedder.device

    # Per batch (batcher threads) ------------------------------------------------------------------------------

    def _decode_batch(self, plans: list[device_decode.Plan]) -> list[device_decode.Decoded | None]:
        from worker import device_decode

        with metrics.timed("decode"):
            return device_decode.decode_plans(plans, self._model_device)

    def _embed_batch(self, images: list[torch.Tensor]) -> Sequence[Vector | BaseException]:
        embedder = self.embedder
        if embedder is None:
            raise RuntimeError("perceptual-only: there is no model")  # the embed stage does not exist then
        with metrics.timed("embed"):
            try:
                return list(embedder.embed(images))
            except Exception as exc:
                log.warning("embedding a batch of %d failed (%s); retrying one by one", len(images), exc)
        results: list[Vector | BaseException] = []
        for image in images:
            try:
                results.append(embedder.embed([image])[0])
            except Exception as exc:
                results.append(TransientError("embed", f"{type(exc).__name__}: {exc}"))
        return results

    def index_size(self) -> float:
        """Originals in the index, for the ``dedup_index_size`` gauge at scrape time: asked of Milvus at most
        every few seconds, and the last known value while Milvus is unreachable."""
        now = time.monotonic()
        if now - self._index_size_at >= INDEX_SIZE_EVERY_S:
            try:
                self._index_size = self.index.count()
                self._index_size_at = now
            except TransientError as exc:
                log.debug("index size unavailable: %s", exc)
        return float(self._index_size)

    # Removals -------------------------------------------------------------------------------------------------

    def remove(self, event: ObjectEvent) -> None:
        """Forget a removed object, if it is really gone: a removal event may be stale (the key was uploaded
        again) or be about a non-current version in a versioned bucket. Its duplicates are decided again."""
        if self.storage.stat(event.bucket, event.key) is not None:
            log.info("%s: still exists; removal event ignored (a re-upload or an old version)", event.id)
            return
        self.decider.forget(event.id, event.event_time_ms)
        metrics.REMOVED.inc()


def _model_input(image: Image.Image) -> torch.Tensor:
    """The model's input for a picture (:func:`worker.embedding.preprocess`), imported only where a model runs."""
    from worker.embedding import preprocess

    return preprocess(image)


def _outcome(decision: Decision) -> Outcome:
    """A decision's outcome: a unique image that only resembles an original (decision rule 10) is ``similar``,
    an original that is tagged and linked but never moved."""
    if decision.match:
        return Outcome.duplicate(decision.match, decision.notes)
    if decision.similar:
        return Outcome.similar(decision.similar, decision.notes)
    return Outcome.unique(decision.notes)


def _event_time(event: ObjectEvent, blob: Blob) -> int:
    """The event's time, unless the object changed since the event (its ETag differs): then the bytes belong to
    a later upload, whose time S3's Last-Modified gives (to the second)."""
    if event.etag and blob.etag and event.etag != blob.etag and blob.last_modified_ms:
        return max(event.event_time_ms, blob.last_modified_ms)
    return event.event_time_ms
