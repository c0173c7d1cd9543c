"""Dynamic batching, as inference servers do it: many threads submit one item each, one thread runs the
handler on whatever has gathered.

A batch closes when it holds ``max_size`` items or when its oldest item has waited ``max_wait_s``; while the
handler is busy, new items keep gathering for the next batch. Each caller gets a :class:`~concurrent.futures.Future`
for its own item, so a task can wait for exactly its result and be acknowledged on its own.

    >>> doubler = DynamicBatcher(lambda xs: [2 * x for x in xs], max_size=32, max_wait_s=0.01, name="double")
    >>> doubler.submit(21).result()
    42
    >>> doubler.close()

The handler returns one result per item, in order. A result that is an exception fails only its own item; an
exception raised by the handler fails the whole batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(slots=True)
class _Pending(Generic[In, Out]):
    item: In
    future: Future[Out] = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class BatcherClosedError(RuntimeError):
    """Submitted to a batcher that is shutting down."""


_STOP = object()


class DynamicBatcher(Generic[In, Out]):
    def __init__(
        self,
        handler: Callable[[list[In]], Sequence[Out | BaseException]],
        *,
        max_size: int,
        max_wait_s: float,
        name: str,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._handler = handler
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Pending[In, Out] | object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: In) -> Future[Out]:
        pending: _Pending[In, Out] = _Pending(item)
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the batcher is closed")
            self._queue.put(pending)
        return pending.future

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the items already submitted, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Pending)
            batch: list[_Pending[In, Out]] = [first]
            deadline = first.arrived + self._max_wait_s
            while len(batch) < self._max_size:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                assert isinstance(nxt, _Pending)
                batch.append(nxt)
            self._dispatch(batch)

    def _dispatch(self, batch: list[_Pending[In, Out]]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        if self._on_batch is not None:
            self._on_batch(len(live))
        try:
            results = self._handler([p.item for p in live])
            if len(results) != len(live):
                raise RuntimeError(f"handler returned {len(results)} results for {len(live)} items")
        except BaseException as exc:
            log.warning("batch of %d failed: %s", len(live), exc)
            for p in live:
                p.future.set_exception(exc)
            return
        for p, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
