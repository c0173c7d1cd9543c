"""Queue depth as Prometheus metrics, read from Redis on every scrape.

Celery's Redis transport keeps a queue as Redis LISTs: the queue's own name, plus ``<queue>\\x06\\x16<n>`` for
each non-zero priority step a message was sent with; a message delivered to a worker but not yet acknowledged
sits in the ``unacked`` hash (one per Redis database, shared by every queue in it). The names come from kombu
itself, so a kombu upgrade that changes them changes them here too.

=========================================  ==========================================================
metric                                     meaning
=========================================  ==========================================================
``dedup_queue_depth{queue}``               messages waiting (all priority lists of the queue summed)
``dedup_queue_unacked``                    messages delivered to workers, not yet acknowledged
``dedup_dead_letter_depth``                messages parked in ``dedup:dead-letters``
``dedup_queue_up``                         1 if Redis answered this scrape, else 0 (the others absent)
``dedup_queue_read_errors_total``          scrapes on which Redis could not be read
=========================================  ==========================================================

A scrape never fails because Redis is down: Redis gets a short timeout and failures show as
``dedup_queue_up 0``. Every replica of the webhook reports the same numbers: aggregate with ``max``, never
``sum``.

    >>> registry.register(QueueDepthCollector(redis.Redis.from_url(url, socket_timeout=1), ["dedup"]))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.delivery import DEAD_LETTERS_KEY

log = logging.getLogger(__name__)

#: Seconds a scrape waits for Redis before reporting ``dedup_queue_up 0``.
REDIS_TIMEOUT_S = 1.0


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold a Celery queue's messages, as kombu names them.

    >>> priority_lists("dedup")
    ['dedup', 'dedup\\x06\\x163', 'dedup\\x06\\x166', 'dedup\\x06\\x169']
    """
    return [f"{queue}{Channel.sep}{step}" if step else queue for step in PRIORITY_STEPS]


class QueueDepthCollector(Collector):
    """A custom collector: each ``collect()`` (one per scrape) reads the lengths in one Redis round trip."""

    def __init__(self, client: redis.Redis, queues: Sequence[str]) -> None:
        self.client = client
        self.queues = list(queues)
        self._errors = 0
        self._lock = threading.Lock()  # scrapes may overlap; the error count must not lose increments

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dedup_queue_up", "1 if the queue's Redis answered this scrape, else 0")
        try:
            lengths = self._read()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                self._errors += 1
            log.warning("could not read queue lengths from Redis: %s", exc)
            lengths = None
        errors = CounterMetricFamily("dedup_queue_read_errors_total", "Scrapes on which Redis could not be read")
        errors.add_metric([], self._errors)
        yield errors
        up.add_metric([], 0 if lengths is None else 1)
        yield up
        if lengths is None:
            return
        depth = GaugeMetricFamily("dedup_queue_depth", "Messages waiting in the queue", labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue], lengths[queue])
        yield depth
        yield GaugeMetricFamily(
            "dedup_queue_unacked", "Messages delivered but not yet acknowledged", value=lengths[Channel.unacked_key]
        )
        yield GaugeMetricFamily(
            "dedup_dead_letter_depth", "Messages parked in the dead-letter list", value=lengths[DEAD_LETTERS_KEY]
        )

    def _read(self) -> dict[str, int]:
        with self.client.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                for name in priority_lists(queue):
                    pipe.llen(name)
            pipe.hlen(Channel.unacked_key)
            pipe.llen(DEAD_LETTERS_KEY)
            replies = [int(n) for n in pipe.execute()]
        steps = len(PRIORITY_STEPS)
        lengths = {queue: sum(replies[i * steps : (i + 1) * steps]) for i, queue in enumerate(self.queues)}
        lengths[Channel.unacked_key], lengths[DEAD_LETTERS_KEY] = replies[-2:]
        return lengths


def queue_depth_collector(broker_url: str, queues: Sequence[str]) -> QueueDepthCollector:
    """A collector for a ``redis://``, ``rediss://`` or ``unix://`` broker URL, with short timeouts."""
    client = redis.Redis.from_url(broker_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
    return QueueDepthCollector(client, queues)
