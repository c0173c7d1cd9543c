"""The dynamic batcher: batches by size and by wait, per-item results and failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.batcher import BatcherClosedError, DynamicBatcher


def test_items_submitted_together_share_a_batch_up_to_its_size() -> None:
    sizes: list[int] = []
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        lambda xs: [x * 10 for x in xs], max_size=4, max_wait_s=0.5, name="t", on_batch=sizes.append
    )
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda x: batcher.submit(x).result(5), range(10)))
    batcher.close()
    assert results == [x * 10 for x in range(10)]
    assert sum(sizes) == 10
    assert max(sizes) == 4
    assert len(sizes) <= 4  # 10 items in batches of at most 4: three batches, four if timing splits one


def test_a_lone_item_waits_no_longer_than_max_wait() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(lambda xs: xs, max_size=64, max_wait_s=0.05, name="t")
    start = time.monotonic()
    assert batcher.submit(7).result(5) == 7
    elapsed = time.monotonic() - start
    batcher.close()
    assert 0.04 <= elapsed < 1.0


def test_items_gather_while_the_handler_is_busy() -> None:
    busy, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def handler(xs: list[int]) -> list[int]:
        busy.set()
        release.wait(5)
        return xs

    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        handler, max_size=16, max_wait_s=0.0, name="t", on_batch=sizes.append
    )
    first = batcher.submit(0)
    assert busy.wait(5)  # the handler now holds item 0
    rest = [batcher.submit(i) for i in range(1, 6)]
    release.set()
    assert [f.result(5) for f in [first, *rest]] == list(range(6))
    batcher.close()
    assert sizes == [1, 5]


def test_an_exception_result_fails_only_its_own_item() -> None:
    def handler(xs: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {x}") if x == 2 else x for x in xs]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(handler, max_size=8, max_wait_s=0.2, name="t")
    futures = [batcher.submit(x) for x in range(4)]
    assert [futures[i].result(5) for i in (0, 1, 3)] == [0, 1, 3]
    with pytest.raises(ValueError, match="bad 2"):
        futures[2].result(5)
    batcher.close()


def test_a_handler_that_raises_fails_the_batch_and_the_batcher_goes_on() -> None:
    calls = 0

    def handler(xs: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model fell over")
        return xs

    batcher: DynamicBatcher[int, int] = DynamicBatcher(handler, max_size=8, max_wait_s=0.0, name="t")
    with pytest.raises(RuntimeError, match="model fell over"):
        batcher.submit(1).result(5)
    assert batcher.submit(2).result(5) == 2
    batcher.close()


def test_close_finishes_pending_items_and_refuses_new_ones() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(lambda xs: xs, max_size=8, max_wait_s=0.2, name="t")
    pending = batcher.submit(5)
    batcher.close()
    assert pending.result(5) == 5
    with pytest.raises(BatcherClosedError):
        batcher.submit(6)
