"""A workaround for kombu's Redis transport: a worker must survive a Redis restart.

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
"""

from __future__ import annotations

from contextlib import suppress
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, whose close() survives a broker that went away."""

    def close(self) -> None:
        if self._in_poll and not self.closed:
            # kombu reads the in-flight BRPOP reply here without catching connection
            # errors; `_brpop_read` clears `_in_poll` whatever happens.
            with suppress(Empty, *self.connection_errors):
                self._brpop_read()
        super().close()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:  # the transport was detached by collect()/close()
            raise redis.ConnectionError("the broker connection was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


def install() -> None:
    """Make kombu's Redis transport create our channels (idempotent)."""
    kombu_redis.Transport.Channel = Channel
