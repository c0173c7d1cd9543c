"""Kombu's Redis transport, made to survive a broker restart under a consuming worker.

On a lost broker connection Celery closes the connection first and its channel after; closing the channel
restores the unacknowledged messages, which then needs the connection just closed, and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'`` (celery 5.7, kombu 5.7); so does the
acknowledgement of a task that was running meanwhile. That is not a connection error, so Celery calls it
unrecoverable and the worker exits — every Redis restart would stop every worker. Here both are skipped with a
warning: the messages stay in Redis' ``unacked`` hash and come back after the visibility timeout (their
actions are idempotent, and each is counted once).

:func:`install` registers this transport for ``redis://`` and ``rediss://`` URLs in this process.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """Acknowledgement emulation that, on a channel whose connection is gone, leaves messages where they are."""

    def _detached(self) -> bool:
        connection = self.channel.connection
        return connection is None or connection.client is None

    def restore_unacked(self, client: Any = None) -> None:
        if self._detached():
            log.warning(
                "broker connection lost: %d unacknowledged messages stay in Redis and come back after the "
                "visibility timeout",
                len(self._delivered),
            )
            self._delivered.clear()
            return
        super().restore_unacked(client)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        if self._detached():
            log.warning("broker connection lost: message %s comes back after the visibility timeout", delivery_tag)
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._detached():
            log.warning("broker connection lost: message %s comes back after the visibility timeout", delivery_tag)
            return
        super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]


class Channel(kombu_redis.Channel):
    """kombu's channel, with one synchronous Redis client per connection pool. kombu builds a new ``redis.Redis``
    (≈ 50 µs of CPU) for each delivered message's bookkeeping and for each acknowledgement, every one on the same
    pool: one client per pool sends the same commands over the same connections (redis-py clients are
    thread-safe; each command or pipeline takes a connection from the pool)."""

    QoS = QoS
    _reused: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool  # a new one after a lost connection (kombu drops its pools): then a new client
        reused = self._reused
        if reused is None or reused.connection_pool is not pool:
            reused = self._reused = super()._create_client()  # type: ignore[no-untyped-call]
        return reused


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
