"""kombu's Redis transport with two changes: a worker survives a Redis restart, and a
publish does not build a redis-py client.

The bug (kombu 5.7.0, celery 5.7.0, redis-py 8.1.0; see docs/upstream-kombu-redis-restart.md):
when the broker connection is lost, celery's consumer calls `connection.collect()` and then
`connection.close()`. `collect()` closes the channels, but the Redis `Channel.close()` first
reads the reply of the BRPOP it has in flight; on a dead socket that read raises
`ConnectionError`, which aborts `close()` before the channel is marked closed and before
its unacknowledged messages (our held poll countdowns) are restored. `collect()` swallows the
error and detaches the transport (`transport.client = None`). `connection.close()` then
closes the same half-closed channel again: this time the restore runs, builds a new
connection pool from `transport.client`, now None, and the `AttributeError` ("'NoneType'
object has no attribute 'hostname'") is not a connection error: the worker exits with
"Unrecoverable error".

The workaround: the pending BRPOP reply is drained tolerantly, so a dead socket no longer
aborts `close()`; the channel closes (and tries to restore its unacknowledged messages) while
its transport is still attached, and the later `close()` finds it closed. Should any other
path still reach a detached transport, building its pool raises a connection error (which
every caller on the teardown path ignores) instead of the AttributeError.

And a cost: kombu builds a new `redis.Redis` client for every operation outside its event
loop (each publish, and in the worker's main process each delivery's unacked bookkeeping
and each acknowledgement). redis-py 8 fills a table of about 280 response callbacks per
client, ≈ 0.5 ms of CPU here: a poll paid that three or four times. One client per channel
and connection pool does the same work (its connections still come from the pool).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, whose close() survives a broker that went away and which
    reuses one client for its synchronous operations."""

    _sync: tuple[redis.ConnectionPool, redis.Redis] | None = None

    def close(self) -> None:
        if self._in_poll and not self.closed:
            # kombu reads the in-flight BRPOP reply here without catching connection
            # errors; `_brpop_read` clears `_in_poll` whatever happens.
            with suppress(Empty, *self.connection_errors):
                self._brpop_read()
        super().close()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        # The transport was detached by collect()/close() (`client` None), or this channel
        # was closed already (kombu's `close_channel` sets its `connection` to None).
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool = self.pool  # a new one after a reconnection: the client follows it
        if self._sync is None or self._sync[0] is not pool:
            self._sync = (pool, self._create_client())
        yield self._sync[1]


def install() -> None:
    """Make kombu's Redis transport create our channels (idempotent)."""
    kombu_redis.Transport.Channel = Channel
