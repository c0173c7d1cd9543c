"""The worker's Prometheus metrics, served from its one process (the threads pool: one registry, no
multiprocess directory needed).

==============================================  ===========================================================
metric                                          meaning
==============================================  ===========================================================
``dedup_images_total{outcome,kind}``            outcomes of accepted events (one each); kind is exact/
                                                perceptual/semantic/none
``dedup_redecided_total{outcome,kind}``         outcomes of decisions the worker asked for itself (below)
``dedup_stage_seconds{stage}``                  latency of download, decode, hash (per image), embed,
                                                search (per batch), act (per image)
``dedup_batch_size{stage}``                     images per model batch (embed) and per decision (decide)
``dedup_errors_total{reason}``                  error outcomes by reason (undecodable, not_found, poison…),
                                                re-decisions included
``dedup_retries_total{reason}``                 transient failures that were retried (s3, milvus, timeout…)
``dedup_dead_letters_total{reason}``            messages given up on and parked in Redis
``dedup_redecisions_total{reason}``             objects sent back to be decided again: superseded (an
                                                earlier copy arrived later), original_changed (their
                                                original was demoted or overwritten), original_removed
``dedup_embeddings_skipped_total``              exact duplicates of indexed originals, decided without
                                                running the model
``dedup_removed_total``                         index rows dropped for s3:ObjectRemoved events
``dedup_tags_dropped_total``                    our tags that did not fit under S3's 10-tag limit
``dedup_index_size``                            originals in the Milvus collection
``dedup_worker_info{device,weights}``           1, labelled with the model's device and weights
==============================================  ===========================================================

Duplicate rate: ``sum(rate(dedup_images_total{outcome="duplicate"}[5m])) / sum(rate(dedup_images_total[5m]))``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

STAGES = ("download", "decode", "hash", "embed", "search", "act")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

IMAGES = Counter("dedup_images_total", "Outcomes of accepted events, one each", ["outcome", "kind"])
REDECIDED = Counter(
    "dedup_redecided_total", "Outcomes of objects the worker sent back to be decided again", ["outcome", "kind"]
)
STAGE_SECONDS = Histogram("dedup_stage_seconds", "Time spent per pipeline stage", ["stage"], buckets=_LATENCY_BUCKETS)
BATCH_SIZE = Histogram("dedup_batch_size", "Images per batch", ["stage"], buckets=_BATCH_BUCKETS)
ERRORS = Counter("dedup_errors_total", "Images that ended in an error outcome, by reason", ["reason"])
RETRIES = Counter("dedup_retries_total", "Transient failures retried with backoff, by reason", ["reason"])
DEAD_LETTERS = Counter("dedup_dead_letters_total", "Messages given up on and dead-lettered", ["reason"])
REDECISIONS = Counter("dedup_redecisions_total", "Objects sent back to be decided again", ["reason"])
EMBEDDINGS_SKIPPED = Counter(
    "dedup_embeddings_skipped_total", "Exact duplicates of indexed originals decided without running the model"
)
LOW_INFORMATION = Counter(
    "dedup_low_information_total",
    "Images a near-duplicate stage abstained for (too little information: decided on exact bytes), by stage",
    ["stage"],
)
REMOVED = Counter("dedup_removed_total", "Index rows removed for s3:ObjectRemoved events")
TAGS_DROPPED = Counter("dedup_tags_dropped_total", "dedup-* tags left out because of S3's 10-tag limit")
INDEX_SIZE = Gauge("dedup_index_size", "Originals stored in the Milvus collection")
WORKER_INFO = Gauge("dedup_worker_info", "Static facts about this worker", ["device", "weights"])


def initialise() -> None:
    """Create every label combination at zero so that rates and alerts see the series from the start."""
    for outcome, kind in (
        ("unique", "none"),
        ("duplicate", "exact"),
        ("duplicate", "perceptual"),
        ("duplicate", "semantic"),
        ("error", "none"),
    ):
        IMAGES.labels(outcome=outcome, kind=kind)
        REDECIDED.labels(outcome=outcome, kind=kind)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage=stage)
    for stage in ("embed", "decide"):
        BATCH_SIZE.labels(stage=stage)
    for reason in ("superseded", "original_changed", "original_removed"):
        REDECISIONS.labels(reason=reason)
    for stage in ("perceptual", "semantic"):
        LOW_INFORMATION.labels(stage=stage)
    # A counter that first appears at 1 is invisible to rate() and increase(): the first dead letter would
    # never raise DedupMessagesDeadLettered (deploy/prometheus/alerts.yml).
    for reason in ("retries_exhausted", "poison"):
        DEAD_LETTERS.labels(reason=reason)


def serve(port: int, host: str) -> None:
    """Expose ``/metrics`` (port 0: don't)."""
    if port:
        start_http_server(port, addr=host)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=stage).observe(time.perf_counter() - start)
