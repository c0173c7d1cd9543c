"""Backfill: enqueue every object that already exists under a bucket/prefix.

Objects are listed in key order with the MinIO client and enqueued a chunk at a time over one broker
connection, behind a progress bar. Each object's ``last_modified`` is its event time, so a backfill decides the
same way as the uploads would have. Resumable: after every chunk the last enqueued key is written to the
``checkpoint`` file (and printed if interrupted); a later run with the same checkpoint, or with
``start_after``, continues after it. Re-enqueueing an object already processed is harmless: decisions are
idempotent.

    >>> backfill(client, enqueuer, "photos", prefix="2024/", checkpoint=Path("photos.ckpt"))
    1532
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from minio import Minio
from tqdm import tqdm

from producer import metrics
from producer.enqueue import Enqueuer
from worker.messages import PROCESS_TASK, ObjectEvent

log = logging.getLogger(__name__)


class BackfillInterruptedError(RuntimeError):
    def __init__(self, last_key: str | None) -> None:
        super().__init__(f"interrupted; resume with --start-after {last_key!r}" if last_key else "interrupted")
        self.last_key = last_key


def list_events(client: Minio, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectEvent]:
    """Every object under ``prefix`` after ``start_after``, in key order, as process events."""
    for obj in client.list_objects(
        bucket_name=bucket, prefix=prefix or None, recursive=True, start_after=start_after or None
    ):
        name = obj.object_name
        if obj.is_dir or name is None or (name.endswith("/") and not obj.size):
            continue  # "folder" markers are not images
        modified = obj.last_modified
        yield ObjectEvent(
            bucket=bucket,
            key=name,
            event_time_ms=int(modified.timestamp() * 1000) if modified else 0,
            etag=(obj.etag or "").strip('"') or None,
            size=obj.size,
        )


def backfill(
    client: Minio,
    enqueuer: Enqueuer,
    bucket: str,
    *,
    prefix: str = "",
    start_after: str | None = None,
    checkpoint: Path | None = None,
    chunk_size: int = 500,
    progress: bool = True,
) -> int:
    """Enqueue every object under ``bucket/prefix``; returns how many were enqueued."""
    if checkpoint is not None and checkpoint.exists() and start_after is None:
        start_after = checkpoint.read_text(encoding="utf-8") or None
        log.info("resuming %s/%s after %r (from %s)", bucket, prefix, start_after, checkpoint)
    sent, last_key = 0, start_after
    events = list_events(client, bucket, prefix, start_after)
    with tqdm(desc=f"{bucket}/{prefix}", unit=" objects", disable=not progress) as bar:
        try:
            for chunk in _chunks(events, chunk_size):
                metrics.RECEIVED.labels(source="backfill").inc(len(chunk))
                sent += enqueuer.send([(PROCESS_TASK, event) for event in chunk])
                last_key = chunk[-1].key
                if checkpoint is not None:
                    checkpoint.write_text(last_key, encoding="utf-8")
                bar.update(len(chunk))
        except KeyboardInterrupt:
            raise BackfillInterruptedError(last_key) from None
    return sent


def _chunks(events: Iterable[ObjectEvent], size: int) -> Iterator[list[ObjectEvent]]:
    iterator = iter(events)
    while chunk := list(islice(iterator, size)):
        yield chunk
