"""Events over aio-pika: the asyncio twin of :mod:`svclink.sync.events`.

Same names, arguments and behaviour, awaited. Only I/O lives here; every decision comes
from :mod:`svclink.core.events`.

Connections are plain ``aio_pika.connect`` connections that svclink reopens itself, the
same way on both sides: a publisher reopens a dropped connection on the next publish (and
sends once), a consumer reconnects with backoff and declares and consumes again. That is
deliberate rather than ``connect_robust``: robust reconnection sticks to one URL (no
failover across ``amqp_url`` nodes) and some aio-pika versions come back from a broker
restart with the channel restored but zero consumers, a consumer that silently stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..core.context.value import bind
from ..core.errors import BrokerUnavailable
from ..core.events.broker import Lost, is_memory, unreachable
from ..core.events.consumer import BaseConsumer
from ..core.events.envelope import Event
from ..core.events.handling import Backoff, Disposition, Handle
from ..core.events.message import Delivery
from ..core.events.publishing import BasePublisher, PublisherCache, Sending
from ..core.events.readiness import check_wait
from ..core.events.running import Phase, State, explain_lost, handler_timeout_error
from ..core.events.topology import ConsumerConfig, topology
from ..core.logs import logger
from ..core.settings import Settings
from ..core.telemetry import HandlerSpan, NoHandlerSpan
from ._loops import close_soon, close_with_loop, closes_done
from ._memory import MemoryLink, MemorySession
from ._pika_link import PikaLink
from ._pika_session import PikaSession
from ._transport import PublishLink, Session

log = logger("svclink.events")

__all__ = ["Event", "EventConsumer", "Publisher", "get_publisher"]

Handler = Callable[[Event], Awaitable[Any]]

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
                    if link is not None:
                        self._drop(link)
                    sending.failed(exc)
                    continue
                if sending.sent(outcomes, now=time.monotonic()):
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


# -- consuming --------------------------------------------------------------------------


class EventConsumer(BaseConsumer[Handler]):
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    The asyncio twin of :class:`svclink.sync.EventConsumer`: handlers are ``async def``
    (a plain function or a non-callable raises ``TypeError`` when registered), and up to
    ``prefetch`` of them run at once.

    With ``exclusive=True`` the queues belong to the consumer's connection: not durable,
    invisible to other connections, deleted by the broker when the connection closes (a
    listener's own temporary copy of the events; give each process its own queue name).
    """

    asynchronous = True
    _loop: asyncio.AbstractEventLoop | None = None
    _wakeup: asyncio.Event | None = None

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to wake
                loop.call_soon_threadsafe(wakeup.set)

    def _open(self, config: ConsumerConfig) -> Session:
        topo = topology(config)
        if is_memory(self.settings):
            return MemorySession(self.settings, self.connection_name, topo, config.prefetch)
        return PikaSession(self.settings, self.connection_name, topo, config.prefetch)

    async def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away."""
        config = self._effective_config()
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested.is_set():
            self._wakeup.set()
        backoff = Backoff()
        self.state = State.STARTING
        failed = True
        try:
            while not self._stop_requested.is_set():
                session = self._open(config)
                try:
                    lost = await self._serve(session, config, backoff)
                except Lost as exc:
                    lost = str(exc)
                finally:
                    await session.close()
                if lost is not None:
                    self.state = State.RECONNECTING
                    log.warning("consumer %s: %s; reconnecting", config.queue, explain_lost(lost))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), backoff.failed())
            failed = False
        finally:
            self._stopped(failed=failed)
            self._loop = self._wakeup = None

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`run` (another task, or another thread's loop) is consuming: its
        queues are declared and bound and the broker delivers to it. True once it is; False
        when ``timeout`` seconds (None: no limit) pass first, or a run ends without consuming.

        A test publishes after this, knowing the consumer's queue will take the events.
        """
        limit = check_wait(timeout)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # this loop has closed: nobody waits any more
                loop.call_soon_threadsafe(changed.set)

        mark = self._readiness.watch(wake)
        try:
            async with asyncio.timeout(limit):
                while not self._readiness.settled(mark):
                    await changed.wait()
                    changed.clear()
        except TimeoutError:
            pass
        finally:
            self._readiness.unwatch(wake)
        return self._readiness.consuming

    async def _serve(self, session: Session, config: ConsumerConfig, backoff: Backoff) -> str | None:
        """Consume on one session until stop (None) or until it is lost (the reason)."""
        assert self._wakeup is not None
        in_flight: set[asyncio.Task[None]] = set()
        slots = None if self.concurrency is None else asyncio.Semaphore(self.concurrency)
        queued: set[Any] = set()  # deliveries waiting for a slot, by token
        stopping = False

        async def on_delivery(delivery: Delivery, token: Any) -> None:
            if stopping:
                await session.reject(token)
                return
            if slots is not None:
                queued.add(token)
                await slots.acquire()
                if token not in queued:  # given back to the queue by the stop meanwhile
                    slots.release()
                    return
                queued.discard(token)
            task = asyncio.current_task()
            assert task is not None
            in_flight.add(task)
            try:
                decision = await self._process(config, delivery)
                await session.finish(token, delivery, decision)
            except Lost as exc:
                log.warning("consumer %s: %s", config.queue, exc)
            finally:
                in_flight.discard(task)
                if slots is not None:
                    slots.release()

        starting = asyncio.ensure_future(session.start(on_delivery))
        await _first(self._wakeup.wait(), starting)
        if not starting.done():  # stop() while the broker had not answered: nothing consumed yet
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return None
        starting.result()  # raises what the start raised (Lost, EventError)
        backoff.connected()
        self.state = State.CONSUMING
        log.info("consumer %s: consuming", config.queue)
        lost = asyncio.ensure_future(session.lost.wait())
        try:
            await _first(self._wakeup.wait(), lost)
            stopping = True
            if self._shutdown.requested:
                self.state = State.DRAINING
            await session.stop_consuming()
            for token in list(queued):
                queued.discard(token)
                await session.reject(token)
            if lost.done():  # the handlers in flight finish; their messages come back after the reconnect
                await asyncio.gather(*in_flight, return_exceptions=True)
            else:
                await self._drain(in_flight, lost, config)
        finally:
            lost.cancel()
        return None if self._shutdown.requested else "connection lost"

    async def _drain(
        self, in_flight: set[asyncio.Task[None]], lost: asyncio.Future[Any], config: ConsumerConfig
    ) -> None:
        """Wait for the handlers in flight within the grace; abandon (cancel) those left after it."""
        assert self._wakeup is not None
        while in_flight and not lost.done():
            if self._shutdown.phase(time.monotonic()) is Phase.ABANDONED:
                log.warning(
                    "consumer %s: stopped with %d handlers still running; their messages go back to "
                    "the queue", config.queue, len(in_flight),
                )  # fmt: skip
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                return
            self._wakeup.clear()  # a second stop() sets it again
            if self._shutdown.phase(time.monotonic()) is Phase.ABANDONED:
                continue
            woken = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait(
                    [*in_flight, woken, lost],
                    timeout=self._shutdown.remaining(time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                woken.cancel()

    async def _process(self, config: ConsumerConfig, delivery: Delivery) -> Disposition:
        step = self._receive(config, delivery, now=time.monotonic(), wall=time.time())
        if not isinstance(step, Handle):
            return step
        error = await _call(step, self.handler_timeout, self.traced(config, delivery, step))
        return self._settle(config, delivery, step, error, time.monotonic(), wall=time.time())


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until one of ``waits`` is done; cancel the others."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            if future is not waits[-1]:
                future.cancel()


async def _call(
    step: Handle[Handler], limit: float, span: HandlerSpan | NoHandlerSpan
) -> BaseException | None:
    """Run a handler in its span, with the publisher's request context bound, for at most
    ``limit`` seconds; its exception (or :class:`~svclink.HandlerTimeout`) is the outcome
    (and the span's)."""
    with span:
        error = await _run(step, limit)
        if error is not None:
            span.failed(error)
    return error


async def _run(step: Handle[Handler], limit: float) -> BaseException | None:
    deadline = asyncio.timeout(limit)
    try:
        with bind(step.event.context):
            async with deadline:
                await step.handler(step.event)
    except TimeoutError as exc:
        return handler_timeout_error(limit) if deadline.expired() else exc
    except Exception as exc:
        return exc
    return None
