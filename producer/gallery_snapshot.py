"""Every link row, read once and reused for a few seconds: what each page of the review gallery filters.

A page of the gallery needs every link that passes its filters, grouped and ordered; Milvus cannot group a query,
so a page is a scan of the links collection. In Milvus Lite that scan costs about the same whatever the filter
(0.4–0.9 s for 10,000 links on 2 cores). The gallery therefore reads all links at most once every ``max_age_s``
and filters them in Python (:meth:`producer.gallery_pages.Filters.keeps`): the next page, another order or filter
costs tens of milliseconds. A restore or confirm made through the gallery drops the snapshot at once; links the
workers write meanwhile show up within ``max_age_s`` (``DEDUP_REVIEW_SNAPSHOT_S``; 0 reads the index on every
page).

    >>> links = LinkSnapshot(index, max_age_s=5.0)
    >>> rows = links.rows()  # a scan of <collection>_links
    >>> rows is links.rows()  # within 5 s: the same rows
    True
    >>> links.drop()  # after a change made here
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.index import Index


class LinkSnapshot:
    """The links collection's rows, at most ``max_age_s`` old; safe to share between threads."""

    def __init__(self, index: Index, *, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._index = index
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: Sequence[dict[str, Any]] | None = None
        self._read_at = 0.0

    def rows(self) -> Sequence[dict[str, Any]]:
        """Every link row, read again when the last read is ``max_age_s`` old or was dropped. Concurrent pages
        share one read (the lock is held while reading)."""
        with self._lock:
            now = self._clock()
            if self._rows is None or now - self._read_at >= self._max_age_s:
                self._rows = tuple(self._index.links())
                self._read_at = now
            return self._rows

    def drop(self) -> None:
        """Forget the rows: the next page reads the index."""
        with self._lock:
            self._rows = None
