"""A count, in Redis, of the batches of originals every worker has stored: what lets a batch skip its re-check.

After a batch stores its originals the pipeline searches again (the *re-check*), because another worker may have
stored a matching original while this one was deciding: Strong consistency does not serialise search-then-insert
across workers. That second search costs as much as the first, and most of the time nobody else stored anything.
So every worker counts its stores in one Redis key per collection (``INCR`` once the upsert has returned), reads
the count before its first search, and re-checks only when its own increment shows that someone else stored in
between::

    >>> stores = Stores(redis.Redis.from_url(url), "image_dedup")
    >>> seen = stores.read()            # before the first search
    >>> ... search, decide, store the originals ...
    >>> stores.alone_since(seen)        # True: nobody stored in between, nothing to re-check
    True

Why this is safe: if two workers' batches A and B miss each other in their first searches, B's upsert returned
after A's search began, so B's increment comes after A's read, and the other way round. Both cannot have
incremented first: the one that incremented second sees the other's increment, re-checks, and finds the other's
rows (stored before that increment). A reading Redis could not give means a re-check; a count that starts again
after a Redis restart starts at a random value, so an old reading never lines up with it. A store that cannot be
counted is a :class:`~worker.errors.TransientError`: the batch is retried, because other workers may skip their
re-checks in the belief that nobody stored. Every worker writing a collection must use the same Redis (the
broker's, which a fleet shares anyway).
"""

from __future__ import annotations

import logging
import secrets

import redis

from worker.errors import TransientError

log = logging.getLogger(__name__)

KEY = "dedup:stores:{collection}"
#: A new count starts anywhere in [0, 2**48): a reading taken before a Redis restart never lines up with it.
_START_BITS = 48


class Stores:
    def __init__(self, client: redis.Redis, collection: str) -> None:
        self.client = client
        self.key = KEY.format(collection=collection)

    def read(self) -> int | None:
        """The count now (None when Redis cannot say: the batch will re-check)."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.key, secrets.randbits(_START_BITS), nx=True)
            pipe.get(self.key)
            _, value = pipe.execute()
            return int(value)
        except (redis.RedisError, TypeError, ValueError) as exc:
            log.warning("store count unavailable (%s); the batch will re-check", exc)
            return None

    def alone_since(self, seen: int | None) -> bool:
        """Count this worker's store (call it once the upsert has returned) and tell whether nobody else stored
        since ``seen`` was read (False when ``seen`` is None). Raises :class:`TransientError` when the store cannot
        be counted."""
        try:
            now = int(self.client.incr(self.key))
        except (redis.RedisError, TypeError, ValueError) as exc:
            raise TransientError("redis", f"could not count a store of originals: {exc}") from exc
        return seen is not None and now == seen + 1
