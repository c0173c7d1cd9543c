"""Delivery bookkeeping in Redis: how often a message came back, and where given-up messages go.

Redis has no dead-letter queue and Celery does not count redeliveries, so we do both ourselves:

* :meth:`Deliveries.start` counts deliveries of one message attempt (task id + retry number) in a Redis key
  that outlives a crashed worker; past ``max_deliveries`` the message is *poison* (e.g. an image that kills the
  process) and gets an ``error`` outcome instead of another run.
* :meth:`Deliveries.finish_first` tells whether a message finishes for the first time: one whose
  acknowledgement was lost (a broker restart, a killed worker) runs again, and must not be counted again.
* :meth:`Deliveries.dead_letter` parks a message that exhausted its retries or was poison in the list
  ``dedup:dead-letters`` (newest first, capped), from where an operator can inspect or re-send it; producers
  park what they cannot read there too (:func:`park`).

Bookkeeping is best-effort: if Redis itself is down the broker is too, and the message will come back anyway.

    >>> deliveries = Deliveries(redis.Redis.from_url(url), max_deliveries=5, ttl_s=3600)
    >>> deliveries.start("3f2a…", retries=0)
    1
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

log = logging.getLogger(__name__)

DEAD_LETTERS_KEY = "dedup:dead-letters"
DEAD_LETTERS_CAP = 100_000
_COUNT_KEY = "dedup:deliveries:{task_id}:{retries}"
_DONE_KEY = "dedup:finished:{task_id}"


class Deliveries:
    def __init__(self, client: redis.Redis, *, max_deliveries: int, ttl_s: int) -> None:
        self.client = client
        self.max_deliveries = max_deliveries
        self.ttl_s = ttl_s

    def start(self, task_id: str, retries: int) -> int:
        """Count this delivery; returns how many times this attempt has been delivered, this one included."""
        key = _COUNT_KEY.format(task_id=task_id, retries=retries)
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, self.ttl_s)
            count, _ = pipe.execute()
            return int(count)
        except redis.RedisError as exc:
            log.warning("delivery count unavailable (%s); assuming a first delivery", exc)
            return 1

    def is_poison(self, count: int) -> bool:
        return count > self.max_deliveries

    def finish(self, task_id: str, retries: int) -> None:
        try:
            self.client.delete(_COUNT_KEY.format(task_id=task_id, retries=retries))
        except redis.RedisError as exc:
            log.warning("could not clear delivery count: %s", exc)

    def finish_first(self, task_id: str, retries: int) -> bool:
        """Clear the delivery count and mark the message finished, in one round trip; returns False if it had
        finished before (it ran again after its acknowledgement was lost). The mark lasts as long as delivery
        counts; without Redis, True."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(_COUNT_KEY.format(task_id=task_id, retries=retries))
            pipe.set(_DONE_KEY.format(task_id=task_id), 1, nx=True, ex=self.ttl_s)
            _, first = pipe.execute()
            return bool(first)
        except redis.RedisError as exc:
            log.warning("could not mark %s finished (%s); counting it", task_id, exc)
            return True

    def dead_letter(self, task: str, payload: dict[str, Any], reason: str, detail: str) -> None:
        try:
            park(self.client, {"task": task, "kwargs": payload, "reason": reason, "detail": detail})
        except redis.RedisError as exc:
            log.error("could not dead-letter %s (%s): %s", payload, reason, exc)


def park(client: redis.Redis, letter: dict[str, Any]) -> None:
    """Put ``letter`` (with the time added) at the head of the dead-letter list, keeping the newest
    :data:`DEAD_LETTERS_CAP`. A letter with ``task`` and ``kwargs`` can be re-sent; one without (a producer's
    unreadable message) is only shown. Raises :class:`redis.RedisError`."""
    entry = json.dumps({**letter, "at": time.time()}, ensure_ascii=False)
    pipe = client.pipeline()
    pipe.lpush(DEAD_LETTERS_KEY, entry)
    pipe.ltrim(DEAD_LETTERS_KEY, 0, DEAD_LETTERS_CAP - 1)
    pipe.execute()
