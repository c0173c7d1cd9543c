"""The service's kombu Redis transport (worker.broker) against a real redis-server: one synchronous client per
connection pool, and a fresh one once kombu has dropped its pools (a lost connection)."""

from __future__ import annotations

from kombu.connection import Connection

from tooling.localstack import LocalStack
from worker import broker


def test_a_channel_reuses_one_redis_client_until_its_pool_is_replaced(stack: LocalStack) -> None:
    broker.install()
    with Connection(stack.broker_url) as connection:  # type: ignore[no-untyped-call]
        channel = connection.default_channel
        assert isinstance(channel, broker.Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        with channel.conn_or_acquire() as client:  # what kombu's acknowledgements and bookkeeping use
            assert client is first
            assert client.ping()
        channel._disconnect_pools()  # type: ignore[no-untyped-call]  # what kombu does on a lost connection
        second = channel._create_client()
        assert second is not first
        assert second.connection_pool is channel.pool
        assert second.ping()
        assert channel._create_client(asynchronous=True) is not second  # BRPOP's clients stay kombu's own
