"""Events over aio-pika: the asyncio twin of :mod:`svclink.sync.events`.

Same names, arguments and behaviour, awaited. Only I/O lives here; every decision comes
from :mod:`svclink.core.events` and :mod:`svclink.core.consuming`.

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
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

from ..core.consuming import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAYS,
    ConsumerConfig,
    Decision,
    Handle,
    HandlerTable,
    log_decision,
    receive,
    reconnect_delay,
    settle,
    topology,
)
from ..core.context import bind, log_incoming
from ..core.errors import BrokerUnavailable, EventError, PublishError
from ..core.events import (
    LOST,
    SEND_ATTEMPTS,
    Delivery,
    Event,
    OutgoingMessage,
    prepare,
    publish_error,
    resolve,
)
from ..core.settings import Settings, get_settings
from ._memory import MemoryLink, MemorySession
from ._pika import PikaLink, PikaSession
from ._transport import Lost, PublishLink, Session, default_name, is_memory

log = logging.getLogger("svclink.events")

__all__ = ["Event", "EventConsumer", "Publisher", "get_publisher"]

Handler = Callable[[Event], Awaitable[Any]]
F = TypeVar("F", bound=Handler)


class Publisher:
    """Publishes events with confirms from asyncio code: one connection per event loop.

    A connection belongs to the loop that opened it, so each loop gets its own; that is
    what lets code publish from repeated ``asyncio.run()`` calls.
    """

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.connection_name = connection_name or default_name(self.settings, "publisher")
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PublishLink] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def _link(self) -> PublishLink:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is not None:
            return link
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:  # many tasks publishing at once open one connection, not many
            link = self._links.get(loop)
            if link is None:
                if is_memory(self.settings):
                    link = MemoryLink(self.settings, self.connection_name)
                else:
                    try:
                        link = await PikaLink.open(self.settings, self.connection_name)
                    except Lost as exc:
                        raise BrokerUnavailable(f"cannot connect to the broker: {exc}") from None
                self._links[loop] = link
            return link

    async def _drop(self, link: PublishLink) -> None:
        loop = asyncio.get_running_loop()
        if self._links.get(loop) is link:
            del self._links[loop]
        await link.close()

    async def publish(
        self,
        event_type: str,
        data: Any,
        *,
        exchange: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Event:
        """Publish one event and wait for the broker's confirm; returns the event as sent.

        Raises exactly what :meth:`svclink.sync.Publisher.publish` raises.
        """
        event, message = prepare(
            self.settings,
            event_type,
            data,
            exchange=exchange,
            event_id=event_id,
            occurred_at=datetime.now(UTC),
            wall=time.time(),
            headers=headers,
        )
        error = (await self._send([message], timeout))[0]
        if error is not None:
            raise error
        return event

    async def publish_many(
        self,
        events: Iterable[tuple[str, Any]],
        *,
        exchange: str | None = None,
        timeout: float | None = None,
    ) -> list[Event]:
        """Publish ``(event_type, data)`` pairs pipelined, waiting once for all their confirms.

        As :meth:`svclink.sync.Publisher.publish_many`.
        """
        now, wall = datetime.now(UTC), time.time()
        prepared = [
            prepare(self.settings, t, d, exchange=exchange, event_id=None, occurred_at=now, wall=wall)
            for t, d in events
        ]
        if not prepared:
            return []
        errors = await self._send([m for _, m in prepared], timeout)
        failed = [(e, err) for (e, _), err in zip(prepared, errors, strict=True) if err is not None]
        if failed:
            first = failed[0][1]
            first.published = tuple(e for (e, _), err in zip(prepared, errors, strict=True) if err is None)
            first.failed = tuple(failed)
            raise first
        return [e for e, _ in prepared]

    async def _send(
        self, messages: Sequence[OutgoingMessage], timeout: float | None
    ) -> list[PublishError | None]:
        """Send with one reopen: messages that never reached a live connection go again, once."""
        deadline = time.monotonic() + (self.settings.publish_timeout if timeout is None else timeout)
        results: list[PublishError | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        sent = False  # whether the messages in ``todo`` went out once and lost their confirms
        for attempt in range(1, SEND_ATTEMPTS + 1):
            link: PublishLink | None = None
            try:
                link = await self._link()
                outcomes = await link.publish([messages[i] for i in todo], deadline)
            except (Lost, BrokerUnavailable) as exc:
                if link is not None:
                    await self._drop(link)
                if sent:  # no way to send them again: they may or may not have landed, not "unavailable"
                    for i in todo:
                        results[i] = publish_error(LOST, messages[i], f"not sent again: {exc}")
                    break
                if isinstance(exc, BrokerUnavailable):
                    raise
                if attempt == SEND_ATTEMPTS:
                    raise BrokerUnavailable(f"connection to the broker lost: {exc}") from None
                continue
            step = resolve(outcomes, attempt=attempt, late=time.monotonic() >= deadline)
            if step.drop:
                await self._drop(link)
            for position, outcome in step.final:
                results[todo[position]] = publish_error(outcome, messages[todo[position]])
            if not step.retry:
                break
            todo, sent = [todo[p] for p in step.retry], True
        return results

    async def close(self) -> None:
        """Close this loop's connection (the next publish opens a new one)."""
        link = self._links.pop(asyncio.get_running_loop(), None)
        if link is not None:
            await link.close()


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


async def get_publisher() -> Publisher:
    """The process's publisher for the installed settings (rebuilt when settings change)."""
    global _publisher
    settings = get_settings()
    with _publisher_lock:
        if _publisher is None or _publisher.settings is not settings:
            _publisher = Publisher(settings)
        return _publisher


# -- consuming --------------------------------------------------------------------------


class EventConsumer:
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    The asyncio twin of :class:`svclink.sync.EventConsumer`: handlers are ``async def``,
    and up to ``prefetch`` of them run at once.

    With ``exclusive=True`` the queues belong to the consumer's connection: not durable,
    invisible to other connections, deleted by the broker when the connection closes (a
    listener's own temporary copy of the events; give each process its own queue name).
    """

    def __init__(
        self,
        queue: str,
        *,
        exchange: str | None = None,
        bindings: Sequence[str] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        prefetch: int | None = None,
        queue_type: str | None = None,
        exclusive: bool = False,
        settings: Settings | None = None,
        connection_name: str | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._bindings = None if bindings is None else tuple(bindings)
        self.config = ConsumerConfig(
            queue=queue,
            exchange=self.settings.event_exchange if exchange is None else exchange,
            bindings=self._bindings or ("#",),
            max_attempts=max_attempts,
            retry_delays=tuple(retry_delays),
            prefetch=self.settings.prefetch_count if prefetch is None else prefetch,
            queue_type=queue_type,
            exclusive=exclusive,
        )
        self.connection_name = connection_name or default_name(self.settings, f"consumer:{queue}")
        self._table: HandlerTable[Handler] = HandlerTable()
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._failures = 0

    def on(self, pattern: str) -> Callable[[F], F]:
        """Decorator: handle events whose type is ``pattern`` or matches it (``*``, ``#``)."""

        def register(handler: F) -> F:
            _check_async(handler)
            self._table.add(pattern, handler)
            return handler

        return register

    def default(self, handler: F) -> F:
        """Decorator: handle every event no other handler matches (the same as ``on("#")``)."""
        _check_async(handler)
        self._table.set_default(handler)
        return handler

    def stop(self) -> None:
        """Ask :meth:`run` to return once the messages in hand are finished.

        A plain method, safe to call from a handler, another task or another thread.
        """
        self._stop_requested.set()
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wakeup.set)

    def _effective_config(self) -> ConsumerConfig:
        if not self._table:
            raise EventError("the consumer has no handlers: register one with @consumer.on(...)")
        return attrs.evolve(self.config, bindings=self._bindings or self._table.patterns())

    async def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away."""
        config = self._effective_config()
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested.is_set():
            self._wakeup.set()
        self._failures = 0
        try:
            while not self._stop_requested.is_set():
                topo = topology(config)
                session: Session
                if is_memory(self.settings):
                    session = MemorySession(self.settings, self.connection_name, topo, config.prefetch)
                else:
                    session = PikaSession(self.settings, self.connection_name, topo, config.prefetch)
                try:
                    lost = await self._serve(session, config)
                except Lost as exc:
                    lost = str(exc)
                finally:
                    await session.close()
                if lost is not None:
                    self._failures += 1
                    log.warning("consumer %s: %s; reconnecting", config.queue, lost)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), reconnect_delay(self._failures))
        finally:
            self._stop_requested.clear()
            self._loop = self._wakeup = None

    async def _serve(self, session: Session, config: ConsumerConfig) -> str | None:
        """Consume on one session until stop (None) or until it is lost (the reason)."""
        assert self._wakeup is not None
        in_flight: set[asyncio.Task[None]] = set()
        stopping = False

        async def on_delivery(delivery: Delivery, token: Any) -> None:
            if stopping:
                await session.reject(token)
                return
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

        await session.start(on_delivery)
        self._failures = 0
        log.info("consumer %s: consuming", config.queue)
        waiters = [asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(session.lost.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        stopping = True
        await session.stop_consuming()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
        if self._stop_requested.is_set():
            return None
        return "connection lost"

    async def _process(self, config: ConsumerConfig, delivery: Delivery) -> Decision:
        step = receive(delivery, config, self._table, self.settings, now=time.monotonic(), wall=time.time())
        if not isinstance(step, Handle):
            log_decision(config, delivery, step)
            return step
        log_incoming(step.incoming, "event")
        error = await _call(step)
        decision = settle(delivery, config, error)
        log_decision(config, delivery, decision, step.event, error)
        return decision


async def _call(step: Handle[Handler]) -> BaseException | None:
    """Run a handler with the publisher's request context bound; its exception is the outcome."""
    try:
        with bind(step.event.context):
            await step.handler(step.event)
    except Exception as exc:
        return exc
    return None


def _check_async(handler: Handler) -> None:
    if not inspect.iscoroutinefunction(handler):
        raise TypeError("svclink.aio handlers must be async def functions; use svclink.sync for plain ones")
