"""The worker's Prometheus metrics, served from its one process (the threads pool: one registry, no
multiprocess directory needed).

==============================================  ===========================================================
metric                                          meaning
==============================================  ===========================================================
``dedup_images_total{outcome,kind}``            outcomes of accepted events (one each): unique/duplicate/
                                                similar/error; kind is exact/perceptual/semantic/none
                                                (``similar`` is always ``semantic``: a suggestion, not moved)
``dedup_redecided_total{outcome,kind}``         outcomes of decisions the worker asked for itself (below)
``dedup_stage_seconds{stage}``                  latency of download, decode, hash (per image), embed,
                                                search (per batch), act (per image)
``dedup_stage_cpu_seconds_total{stage}``        CPU time the thread running each stage spent in it (the
                                                rest of ``process_cpu_seconds_total`` is Celery, Redis,
                                                client libraries, logging)
``dedup_batch_size{stage}``                     images per model batch (embed) and per decision (decide)
``dedup_errors_total{reason}``                  error outcomes by reason (undecodable, not_found, poison…),
                                                re-decisions included
``dedup_retries_total{reason}``                 transient failures that were retried (s3, milvus, timeout…)
``dedup_dead_letters_total{reason}``            messages given up on and parked in Redis
``dedup_redecisions_total{reason}``             objects sent back to be decided again: superseded (an
                                                earlier copy arrived later), original_changed (their
                                                original was demoted or overwritten), original_removed
``dedup_rechecks_total{result}``                batches of new originals searched again after storing
                                                (``searched``), or not, because no other worker stored
                                                anything meanwhile (``skipped``; :mod:`worker.stores`)
``dedup_embeddings_skipped_total``              exact duplicates of indexed originals, decided without
                                                running the model
``dedup_removed_total``                         index rows dropped for s3:ObjectRemoved events
``dedup_tags_dropped_total``                    our tags that did not fit under S3's 10-tag limit
``dedup_index_size``                            originals in the Milvus collection
``dedup_worker_info{device,weights}``           1, labelled with the model's device and weights
``dedup_reviews_total{verdict,kind}``           duplicates a person restored (``verdict="restored"``: no
                                                duplicate after all) or confirmed, by the kind they had
                                                matched with; read from ``<collection>_reviews``
==============================================  ===========================================================

Duplicate rate: ``sum(rate(dedup_images_total{outcome="duplicate"}[5m])) / sum(rate(dedup_images_total[5m]))``
(``similar`` outcomes are suggestions, not duplicates: they count in the denominator only).

Restores and confirmations happen in other processes (``python -m producer restore``, the review gallery), and
each is recorded in Milvus; the worker counts them there on each scrape (at most every few seconds), so the
counter includes every review ever made, whichever process made it, and survives restarts. Observed
false-positive rate by kind: ``sum by (kind) (dedup_reviews_total{verdict="restored"}) /
clamp_min(sum by (kind) (dedup_reviews_total), 1)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STAGES = ("download", "decode", "hash", "embed", "search", "act")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

IMAGES = Counter("dedup_images_total", "Outcomes of accepted events, one each", ["outcome", "kind"])
REDECIDED = Counter(
    "dedup_redecided_total", "Outcomes of objects the worker sent back to be decided again", ["outcome", "kind"]
)
STAGE_SECONDS = Histogram("dedup_stage_seconds", "Time spent per pipeline stage", ["stage"], buckets=_LATENCY_BUCKETS)
STAGE_CPU = Counter("dedup_stage_cpu_seconds", "CPU time of the thread running each pipeline stage", ["stage"])
BATCH_SIZE = Histogram("dedup_batch_size", "Images per batch", ["stage"], buckets=_BATCH_BUCKETS)
ERRORS = Counter("dedup_errors_total", "Images that ended in an error outcome, by reason", ["reason"])
RETRIES = Counter("dedup_retries_total", "Transient failures retried with backoff, by reason", ["reason"])
DEAD_LETTERS = Counter("dedup_dead_letters_total", "Messages given up on and dead-lettered", ["reason"])
REDECISIONS = Counter("dedup_redecisions_total", "Objects sent back to be decided again", ["reason"])
RECHECKS = Counter(
    "dedup_rechecks_total", "Batches of new originals searched again after storing, or skipped", ["result"]
)
EMBEDDINGS_SKIPPED = Counter(
    "dedup_embeddings_skipped_total", "Exact duplicates of indexed originals decided without running the model"
)
LOW_INFORMATION = Counter(
    "dedup_low_information_total",
    "Images a near-duplicate stage abstained for (too little information: decided on exact bytes), by stage",
    ["stage"],
)
REMOVED = Counter("dedup_removed_total", "Index rows removed for s3:ObjectRemoved events")
PROMOTED = Counter(
    "dedup_promoted_total", "Quarantined duplicates copied back as the original because their original went"
)
LEFT_IN_QUARANTINE = Counter(
    "dedup_left_in_quarantine_total",
    "Quarantined duplicates of a removed or overwritten original that were not promoted, by reason",
    ["reason"],  # keep (DEDUP_ON_ORIGINAL_REMOVED=keep), original_back, key_taken
)
TAGS_DROPPED = Counter("dedup_tags_dropped_total", "dedup-* tags left out because of S3's 10-tag limit")
INDEX_SIZE = Gauge("dedup_index_size", "Originals stored in the Milvus collection")
WORKER_INFO = Gauge("dedup_worker_info", "Static facts about this worker", ["device", "weights"])


class ReviewCounts(Collector):
    """``dedup_reviews_total{verdict,kind}``, read from a ``counts()`` source (``Reviews.counts``) at most every
    ``every_s`` seconds; the last known counts while the source fails; nothing until a source is set."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._source: Callable[[], Mapping[tuple[str, str], int]] | None = None
        self._counts: Mapping[tuple[str, str], int] = {}
        self._at = float("-inf")
        self._lock = threading.Lock()

    def set_source(self, source: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        with self._lock:
            self._source, self._at = source, float("-inf")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._source is None:
                return
            now = time.monotonic()
            if now - self._at >= self.every_s:
                try:
                    self._counts = dict(self._source())
                    self._at = now
                except Exception as exc:  # an unreachable Milvus must not break the scrape
                    log.debug("review counts unavailable: %s", exc)
            counts = dict(self._counts)
        help_text = "Duplicates a person restored or confirmed, by verdict and kind"
        family = CounterMetricFamily("dedup_reviews", help_text, labels=["verdict", "kind"])
        for (verdict, kind), value in sorted(counts.items()):
            family.add_metric([verdict, kind], value)
        yield family


REVIEWS = ReviewCounts()
REGISTRY.register(REVIEWS)


def initialise() -> None:
    """Create every label combination at zero so that rates and alerts see the series from the start."""
    for outcome, kind in (
        ("unique", "none"),
        ("duplicate", "exact"),
        ("duplicate", "perceptual"),
        ("duplicate", "semantic"),
        ("similar", "semantic"),
        ("error", "none"),
    ):
        IMAGES.labels(outcome=outcome, kind=kind)
        REDECIDED.labels(outcome=outcome, kind=kind)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage=stage)
        STAGE_CPU.labels(stage=stage)
    for stage in ("embed", "decide", "decode"):
        BATCH_SIZE.labels(stage=stage)
    for result in ("searched", "skipped"):
        RECHECKS.labels(result=result)
    for reason in ("superseded", "original_changed", "original_removed"):
        REDECISIONS.labels(reason=reason)
    for stage in ("perceptual", "semantic"):
        LOW_INFORMATION.labels(stage=stage)
    # A counter that first appears at 1 is invisible to rate() and increase(): the first dead letter would
    # never raise DedupMessagesDeadLettered (deploy/prometheus/alerts.yml).
    for reason in ("retries_exhausted", "poison"):
        DEAD_LETTERS.labels(reason=reason)
    for reason in ("keep", "original_back", "key_taken"):
        LEFT_IN_QUARANTINE.labels(reason=reason)


def serve(port: int, host: str) -> None:
    """Expose ``/metrics`` (port 0: don't)."""
    if port:
        start_http_server(port, addr=host)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observe the stage's latency and add the calling thread's CPU time to its CPU counter."""
    seconds, cpu_seconds = _stage_series(stage)
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        seconds.observe(time.perf_counter() - start)
        cpu_seconds.inc(time.thread_time() - cpu)


@cache
def _stage_series(stage: str) -> tuple[Histogram, Counter]:
    """A stage's two series, looked up once rather than on every image (``labels()`` takes a lock)."""
    return STAGE_SECONDS.labels(stage=stage), STAGE_CPU.labels(stage=stage)
