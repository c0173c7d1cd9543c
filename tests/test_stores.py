"""The store count that lets a batch skip its re-check, against a real redis-server."""

from __future__ import annotations

import pytest
import redis

from tests.rig import store_count
from tooling.localstack import LocalStack, free_port
from worker.errors import TransientError
from worker.stores import Stores

pytestmark = pytest.mark.integration


def test_a_store_nobody_else_stored_alongside_needs_no_recheck(stack: LocalStack, prefix: str) -> None:
    mine = store_count(stack, prefix)
    assert mine.alone_since(mine.read())
    assert mine.alone_since(mine.read())  # and the next batch too
    assert not mine.alone_since(None)  # a reading Redis could not give: re-check


def test_a_store_by_another_worker_in_between_means_a_recheck(stack: LocalStack, prefix: str) -> None:
    mine, theirs = store_count(stack, prefix), store_count(stack, prefix)
    seen = mine.read()
    assert theirs.alone_since(theirs.read())
    assert not mine.alone_since(seen)


def test_each_collection_has_its_own_count(stack: LocalStack, prefix: str) -> None:
    mine, elsewhere = store_count(stack, f"{prefix}-a"), store_count(stack, f"{prefix}-b")
    seen = mine.read()
    elsewhere.alone_since(elsewhere.read())
    assert mine.alone_since(seen)


def test_a_reading_from_before_the_count_started_again_means_a_recheck(stack: LocalStack, prefix: str) -> None:
    mine = store_count(stack, prefix)
    seen = mine.read()
    mine.client.delete(mine.key)  # what a Redis restart without persistence does to it
    assert not mine.alone_since(seen)
    assert mine.alone_since(mine.read())


def test_without_redis_the_batch_rechecks_and_an_uncounted_store_is_retried(prefix: str) -> None:
    gone = Stores(redis.Redis(port=free_port(), socket_connect_timeout=1), prefix)
    assert gone.read() is None
    with pytest.raises(TransientError, match="redis"):
        gone.alone_since(0)
