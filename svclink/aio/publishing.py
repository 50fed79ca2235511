"""Publishing over aio-pika: the asyncio twin of :mod:`svclink.sync.publishing`.

Same names, arguments and behaviour, awaited: one connection per event loop. Connections
are plain ``aio_pika.connect`` connections that svclink reopens itself, the same way on
both sides: a publisher reopens a dropped connection on the next publish (and sends
once), a consumer reconnects with backoff and declares and consumes again. That is
deliberate rather than ``connect_robust``: robust reconnection sticks to one URL (no
failover across ``amqp_url`` nodes) and some aio-pika versions come back from a broker
restart with the channel restored but zero consumers, a consumer that silently stops.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from ..core.errors import BrokerUnavailable
from ..core.events.broker import Lost, is_memory, unreachable
from ..core.events.envelope import Event
from ..core.events.publishing import BasePublisher, PublisherCache, Sending, drops_connection
from ..core.logs import logger
from ..core.settings import Settings
from ._loops import close_soon, close_with_loop, closes_done
from ._memory import MemoryLink
from ._pika_link import PikaLink
from ._transport import PublishLink

log = logger("svclink.events")

__all__ = ["Publisher", "get_publisher"]

#: a loop's connection, and the parked generator that closes it when the loop shuts down
_LoopLink = tuple[PublishLink, AsyncGenerator[None, None]]


class Publisher(BasePublisher):
    """Publishes events with confirms from asyncio code: one connection per event loop.

    A connection belongs to the loop that opened it, so each loop gets its own, closed
    when that loop shuts down (at the end of ``asyncio.run()``); that is what lets code
    publish from repeated ``asyncio.run()`` calls. ``async with Publisher() as publisher:``
    closes this loop's connection at the end of the block, as :meth:`aclose` does.
    """

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        super().__init__(settings, connection_name=connection_name)
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopLink] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _link(self) -> PublishLink | None:
        """This loop's connection, if it has one (a plain function: no coroutine for the usual case)."""
        entry = self._links.get(asyncio.get_running_loop())
        return None if entry is None else entry[0]

    async def _new_link(self, deadline: float) -> PublishLink:
        """Open this loop's connection (one task of many opens it) before ``deadline``, or raise."""
        loop = asyncio.get_running_loop()
        for old in [lp for lp in self._links if lp.is_closed()]:
            del self._links[old]  # a loop closed without shutting down its async generators
        lock = self._locks.setdefault(loop, asyncio.Lock())
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())), lock:
                entry = self._links.get(loop)  # many tasks publishing at once open one connection
                if entry is None:
                    link = await self._open()
                    closer = await close_with_loop(lambda: self._closed(loop, link))
                    entry = self._links[loop] = (link, closer)
        except TimeoutError:  # the time of a publish bounds its connect, as on the sync side
            raise unreachable("no connection in time") from None
        return entry[0]

    async def _open(self) -> PublishLink:
        if is_memory(self.settings):
            return MemoryLink(self.settings, self.connection_name)
        try:
            return await PikaLink.open(self.settings, self.connection_name)
        except Lost as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def _closed(self, loop: asyncio.AbstractEventLoop, link: PublishLink) -> None:
        """Forget ``link`` (if still this loop's) and close it: on drop, close, or loop shutdown."""
        entry = self._links.get(loop)
        if entry is not None and entry[0] is link:
            del self._links[loop]
        await link.close()

    def _drop(self, link: PublishLink) -> None:
        """Forget ``link`` and close it without waiting: it is dead or has stopped answering."""
        loop = asyncio.get_running_loop()
        entry = self._links.get(loop)
        if entry is not None and entry[0] is link:
            del self._links[loop]
            close_soon(entry[1].aclose())  # its close_with_loop generator
        else:
            close_soon(link.close())

    async def publish(
        self,
        event_type: str,
        data: Any,
        *,
        exchange: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        format: str | None = None,
        unroutable: str | None = None,
    ) -> Event:
        """Publish one event and wait for the broker's confirm; returns the event as sent.

        Raises exactly what :meth:`svclink.sync.Publisher.publish` raises.
        """
        with self.traced(event_type, exchange):
            sending = self._sending_one(
                event_type, data, exchange=exchange, event_id=event_id, headers=headers, timeout=timeout,
                layout=format, now=time.monotonic(), wall=time.time(), unroutable=unroutable,
            )  # fmt: skip
            await self._send(sending)
        return sending.event()

    async def publish_many(
        self,
        events: Iterable[tuple[str, Any]],
        *,
        exchange: str | None = None,
        timeout: float | None = None,
        format: str | None = None,
        unroutable: str | None = None,
    ) -> list[Event]:
        """Publish ``(event_type, data)`` pairs pipelined, waiting once for all their confirms.

        As :meth:`svclink.sync.Publisher.publish_many`.
        """
        with self.traced("", exchange):
            sending = self._sending_many(
                events,
                exchange=exchange,
                timeout=timeout,
                layout=format,
                now=time.monotonic(),
                wall=time.time(),
                unroutable=unroutable,
            )
            await self._send(sending)
        return sending.events()

    async def _send(self, sending: Sending) -> None:
        """Send on this loop's connection, reopening it when :class:`Sending` says so."""
        with self._observed(sending, time.monotonic):
            while (batch := sending.batch()) is not None:
                link: PublishLink | None = None
                try:
                    link = self._link()
                    if link is None:
                        link = await self._new_link(sending.deadline)
                    outcomes = await link.publish(batch, sending.deadline)
                except (Lost, BrokerUnavailable) as exc:
                    if link is not None and drops_connection(exc):
                        self._drop(link)
                    sending.failed(exc)
                    continue
                if sending.sent(outcomes, now=time.monotonic(), refusal=link.refusal):
                    self._drop(link)

    async def aclose(self) -> None:
        """Close this loop's connection (the next publish opens a new one), and wait for those
        dropped earlier to finish closing."""
        loop = asyncio.get_running_loop()
        entry = self._links.get(loop)
        if entry is not None:
            await entry[1].aclose()
        await closes_done()

    #: the same as :meth:`aclose`, kept so that code written for svclink 0.1 keeps working
    close = aclose

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


_publishers = PublisherCache(Publisher)


async def get_publisher() -> Publisher:
    """The process's publisher for the installed settings (rebuilt when settings change)."""
    return _publishers.get()
