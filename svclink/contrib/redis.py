"""The inbox in Redis, for deduplicating handlers that have no database (``svclink[redis]``).

.. code-block:: python

    import redis
    consumer = EventConsumer("mailer.users", dedupe=RedisInbox(redis.Redis()))

The handler claims its event with ``SET key running NX PX lease``; once it returns, the key
says ``done`` for ``inbox_retention`` seconds and later deliveries are acked unhandled; if it
raises, the key is deleted and the event is retried. This is weaker than a database store,
which commits the record and the handler's writes in one transaction:

- a consumer killed after the handler's effects and before ``done`` is written leaves the
  ``running`` key, and the event waits until the lease ends, then runs again (its effects may
  happen twice);
- while a key says ``running``, another delivery of the event is retried later
  (:class:`~svclink.core.events.inbox.EventInFlight`), not acked;
- Redis losing writes (no persistence, a failover) forgets events, which then run again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._extras import require
from ..core.events.inbox import DONE, RUNNING, redis_key, taken
from ..core.settings import get_settings

require("redis", "redis")

#: seconds a handler may hold its event's key before another delivery may run it
DEFAULT_LEASE = 300.0


class RedisInbox:
    """A Redis inbox store for svclink.sync consumers (a ``redis.Redis`` client)."""

    asynchronous = False

    def __init__(self, client: Any, *, lease: float = DEFAULT_LEASE, retention: float | None = None) -> None:
        self.client = client
        self.lease_ms = int(lease * 1000)
        self.retention_ms = int((retention or get_settings().inbox_retention) * 1000)

    def once(self, queue: str, event_id: str, call: Callable[[], Any]) -> bool:
        key = redis_key(queue, event_id)
        while not self.client.set(key, RUNNING, nx=True, px=self.lease_ms):
            if taken(self.client.get(key), key):
                return False
        try:
            call()
        except BaseException:
            self.client.delete(key)
            raise
        self.client.set(key, DONE, px=self.retention_ms)
        return True


class AsyncRedisInbox:
    """:class:`RedisInbox` for svclink.aio consumers (a ``redis.asyncio.Redis`` client)."""

    asynchronous = True

    def __init__(self, client: Any, *, lease: float = DEFAULT_LEASE, retention: float | None = None) -> None:
        self.client = client
        self.lease_ms = int(lease * 1000)
        self.retention_ms = int((retention or get_settings().inbox_retention) * 1000)

    async def once(self, queue: str, event_id: str, call: Callable[[], Awaitable[Any]]) -> bool:
        key = redis_key(queue, event_id)
        while not await self.client.set(key, RUNNING, nx=True, px=self.lease_ms):
            if taken(await self.client.get(key), key):
                return False
        try:
            await call()
        except BaseException:
            await self.client.delete(key)
            raise
        await self.client.set(key, DONE, px=self.retention_ms)
        return True
