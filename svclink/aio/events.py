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
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
from yarl import URL

from ..core.consuming import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAYS,
    Ack,
    ConsumerConfig,
    Decision,
    Handle,
    HandlerTable,
    Topology,
    log_decision,
    receive,
    reconnect_delay,
    republish,
    settle,
    topology,
)
from ..core.context import bind, log_incoming
from ..core.errors import BrokerUnavailable, EventError
from ..core.events import (
    ACKED,
    LOST,
    NACKED,
    RETURNED,
    TIMED_OUT,
    Delivery,
    Event,
    OutgoingMessage,
    Properties,
    prepare,
    publish_error,
)
from ..core.settings import Settings, get_settings
from ..testing import memory

log = logging.getLogger("svclink.events")

__all__ = ["Event", "EventConsumer", "Publisher", "get_publisher"]

Handler = Callable[[Event], Awaitable[Any]]
F = TypeVar("F", bound=Handler)

_AMQP_LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
    RuntimeError,
)


class _Lost(Exception):
    """The connection (or channel) is gone; whatever was in flight may be redelivered."""


def _is_memory(settings: Settings) -> bool:
    return settings.amqp_url[0].startswith("memory:")


def _default_name(settings: Settings, role: str) -> str:
    return f"svclink:{settings.service_name or 'app'}:{role}"


async def _connect(settings: Settings, name: str) -> aio_pika.abc.AbstractConnection:
    """A connection to the first node of ``amqp_url`` that answers."""
    errors = []
    for url in settings.amqp_url:
        target = URL(url).update_query(heartbeat=str(settings.amqp_heartbeat))
        try:
            return await aio_pika.connect(
                target,
                timeout=settings.connect_timeout,
                client_properties={"connection_name": name, "product": "svclink"},
            )
        except (TimeoutError, *_AMQP_LOST) as exc:
            errors.append(f"{URL(url).with_password(None).with_user(None)}: {exc!r}")
    raise _Lost("; ".join(errors))


def _aio_message(properties: Properties, body: bytes) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers=dict(properties.headers),
        content_type=properties.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
    )


def _core_delivery(message: aio_pika.abc.AbstractIncomingMessage) -> Delivery:
    stamp = message.timestamp
    return Delivery(
        body=message.body,
        properties=Properties(
            headers=dict(message.headers or {}),
            message_id=message.message_id,
            type=message.type,
            app_id=message.app_id,
            correlation_id=message.correlation_id,
            timestamp=int(stamp.timestamp()) if isinstance(stamp, datetime) else None,
            content_type=message.content_type,
        ),
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
    )


def _confirmed(confirm: memory.Confirm) -> asyncio.Future[str]:
    """A future on the running loop for a memory-broker confirm (resolved from any thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def resolve(done: memory.Confirm) -> None:
        def set_result() -> None:
            if not future.done():
                future.set_result(done.outcome or LOST)

        with contextlib.suppress(RuntimeError):  # the loop may be gone
            loop.call_soon_threadsafe(set_result)

    confirm.add_done_callback(resolve)
    return future


# -- publishing -------------------------------------------------------------------------


class _PublishLink(Protocol):
    async def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]: ...

    async def close(self) -> None: ...


class _PikaLink:
    """One connection + confirm channel, used by every task of one event loop."""

    def __init__(
        self, connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}

    @classmethod
    async def open(cls, settings: Settings, name: str) -> _PikaLink:
        connection = await _connect(settings, name)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except _AMQP_LOST as exc:
            await connection.close()
            raise _Lost(repr(exc)) from None
        return cls(connection, channel)

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            if name == "":
                exchange = self._channel.default_exchange
            else:
                try:
                    exchange = await self._channel.declare_exchange(
                        name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                except aiormq.exceptions.ChannelPreconditionFailed as exc:
                    raise EventError(f"exchange {name!r} exists with other settings: {exc}") from None
            self._exchanges[name] = exchange
        return exchange

    async def _one(self, message: OutgoingMessage, deadline: float) -> str:
        try:
            exchange = await self._exchange(message.exchange)
            await exchange.publish(
                _aio_message(message.properties, message.body),
                message.routing_key,
                mandatory=message.mandatory,
                timeout=max(0.001, deadline - time.monotonic()),
            )
        except aio_pika.exceptions.PublishError:
            return RETURNED
        except aio_pika.exceptions.DeliveryError:
            return NACKED
        except TimeoutError:
            return TIMED_OUT
        except _AMQP_LOST:
            return LOST
        return ACKED

    async def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]:
        await asyncio.sleep(0)  # let the reader task see a close that arrived while idle
        if self._connection.is_closed or self._channel.is_closed:
            raise _Lost("connection closed while idle")
        return list(await asyncio.gather(*(self._one(m, deadline) for m in messages)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()


class _MemoryLink:
    def __init__(self, settings: Settings, name: str) -> None:
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._connection = self._broker.connect(name)

    async def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]:
        if self._connection.closed:
            raise _Lost(self._connection.close_reason or "closed")
        futures = []
        try:
            for exchange in {m.exchange for m in messages} - {""}:
                self._broker.declare_exchange(self._connection, exchange, "topic")
            for message in messages:
                futures.append(_confirmed(self._broker.publish(self._connection, message)))
        except memory.ConnectionClosed as exc:
            if not futures:
                raise _Lost(str(exc)) from None
        except memory.MemoryBrokerError as exc:
            raise EventError(f"the broker refused the publish: {exc}") from None
        outcomes = []
        for future in futures:
            try:
                outcome = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                outcome = TIMED_OUT
            outcomes.append(LOST if outcome == "closed" else outcome)
        return outcomes + [LOST] * (len(messages) - len(futures))

    async def close(self) -> None:
        self._connection.close()


class Publisher:
    """Publishes events with confirms from asyncio code: one connection per event loop.

    A connection belongs to the loop that opened it, so each loop gets its own; that is
    what lets code publish from repeated ``asyncio.run()`` calls.
    """

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.connection_name = connection_name or _default_name(self.settings, "publisher")
        self._links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PublishLink] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    async def _link(self) -> _PublishLink:
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is not None:
            return link
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:  # many tasks publishing at once open one connection, not many
            link = self._links.get(loop)
            if link is None:
                if _is_memory(self.settings):
                    link = _MemoryLink(self.settings, self.connection_name)
                else:
                    try:
                        link = await _PikaLink.open(self.settings, self.connection_name)
                    except _Lost as exc:
                        raise BrokerUnavailable(f"cannot connect to the broker: {exc}") from None
                self._links[loop] = link
            return link

    async def _drop(self, link: _PublishLink) -> None:
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
            first.published = [e for (e, _), err in zip(prepared, errors, strict=True) if err is None]  # type: ignore[attr-defined]
            first.failed = failed  # type: ignore[attr-defined]
            raise first
        return [e for e, _ in prepared]

    async def _send(
        self, messages: Sequence[OutgoingMessage], timeout: float | None
    ) -> list[Exception | None]:
        """Send with one reopen: messages that never reached a live connection go again, once."""
        deadline = time.monotonic() + (self.settings.publish_timeout if timeout is None else timeout)
        results: list[Exception | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        for attempt in (1, 2):
            link = await self._link()
            try:
                outcomes = await link.publish([messages[i] for i in todo], deadline)
            except _Lost as exc:
                await self._drop(link)
                if attempt == 2:
                    raise BrokerUnavailable(f"connection to the broker lost: {exc}") from None
                continue
            if LOST in outcomes or TIMED_OUT in outcomes:
                await self._drop(link)  # a connection that lost or never confirmed a message is not reused
            retry = []
            for i, outcome in zip(todo, outcomes, strict=True):
                late = time.monotonic() >= deadline
                if outcome == LOST and attempt == 1 and not late:
                    retry.append(i)  # same event id: consumers can deduplicate the rare double
                else:
                    results[i] = publish_error(
                        TIMED_OUT if outcome == LOST and late else outcome, messages[i]
                    )
            if not retry:
                break
            todo = retry
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


class _Session(Protocol):
    lost: asyncio.Event

    async def start(self, on_delivery: Callable[[Delivery, Any], Coroutine[Any, Any, None]]) -> None: ...

    async def finish(self, token: Any, delivery: Delivery, decision: Decision) -> None: ...

    async def reject(self, token: Any) -> None: ...

    async def stop_consuming(self) -> None: ...

    async def close(self) -> None: ...


class _PikaSession:
    """One consumer connection: declares the topology and consumes; aio-pika runs each message as a task."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._settings, self._name, self._topo, self._prefetch = settings, name, topo, prefetch
        self.lost = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._tag: str | None = None

    def _on_close(self, *_args: Any) -> None:
        self.lost.set()

    async def start(self, on_delivery: Callable[[Delivery, Any], Coroutine[Any, Any, None]]) -> None:
        self._connection = await _connect(self._settings, self._name)
        self._connection.close_callbacks.add(self._on_close)
        topo = self._topo
        try:
            channel = self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            channel.close_callbacks.add(self._on_close)
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(self._on_close)  # the queue was deleted, say
            await channel.set_qos(prefetch_count=self._prefetch)
            exchange = await channel.declare_exchange(
                topo.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for spec in (*topo.retry_queues, topo.dead_queue):
                await channel.declare_queue(spec.name, durable=True, arguments=dict(spec.arguments))
            queue = self._queue = await channel.declare_queue(
                topo.queue.name, durable=True, arguments=dict(topo.queue.arguments)
            )
            for pattern in topo.bindings:
                await queue.bind(exchange, routing_key=pattern)

            async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                await on_delivery(_core_delivery(message), message)

            self._tag = await queue.consume(deliver, no_ack=False)
        except aiormq.exceptions.ChannelClosed as exc:
            await self.close()
            if isinstance(
                exc, (aiormq.exceptions.ChannelPreconditionFailed, aiormq.exceptions.ChannelAccessRefused)
            ):
                raise EventError(f"cannot declare the consumer's queues: {exc}") from None
            raise _Lost(repr(exc)) from None
        except _AMQP_LOST as exc:
            await self.close()
            raise _Lost(repr(exc)) from None

    async def finish(self, token: Any, delivery: Delivery, decision: Decision) -> None:
        message: aio_pika.abc.AbstractIncomingMessage = token
        assert self._channel is not None
        if not isinstance(decision, Ack):
            copy = republish(delivery, decision)
            try:
                await self._channel.default_exchange.publish(
                    _aio_message(copy.properties, copy.body), copy.routing_key, mandatory=True, timeout=30
                )
            except (aio_pika.exceptions.DeliveryError, TimeoutError) as exc:
                await message.nack(requeue=True)
                self.lost.set()  # reconnect: declaring again restores a deleted delay/dead queue
                raise _Lost(f"could not move the message to {copy.routing_key}: {exc!r}") from None
        await message.ack()

    async def reject(self, token: Any) -> None:
        message: aio_pika.abc.AbstractIncomingMessage = token
        with contextlib.suppress(*_AMQP_LOST):
            await message.nack(requeue=True)

    async def stop_consuming(self) -> None:
        if self._queue is not None and self._tag is not None and not self.lost.is_set():
            with contextlib.suppress(*_AMQP_LOST, TimeoutError):
                await self._queue.cancel(self._tag, timeout=5)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


class _MemorySession:
    """A consumer on the in-process broker; deliveries arrive from any thread via the loop."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._topo, self._prefetch, self._name = topo, prefetch, name
        self.lost = asyncio.Event()
        self._connection = self._broker.connect(name)
        self._tag = ""

    async def start(self, on_delivery: Callable[[Delivery, Any], Coroutine[Any, Any, None]]) -> None:
        loop = asyncio.get_running_loop()
        b, c, topo = self._broker, self._connection, self._topo
        tasks: set[asyncio.Task[None]] = set()

        def spawn(item: memory.MemoryDelivery) -> None:
            m = item.message
            delivery = Delivery(m.body, m.properties, m.exchange, m.routing_key, item.redelivered)
            task = loop.create_task(on_delivery(delivery, item.delivery_tag))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def from_broker(item: memory.MemoryDelivery) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(spawn, item)

        def closed(_reason: str) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.lost.set)

        try:
            b.declare_exchange(c, topo.exchange, "topic")
            for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
                b.declare_queue(c, spec.name, spec.arguments)
            for pattern in topo.bindings:
                b.bind(c, topo.queue.name, topo.exchange, pattern)
            c.add_close_callback(closed)
            self._tag = b.consume(
                c,
                topo.queue.name,
                from_broker,
                prefetch=self._prefetch,
                on_cancel=lambda: closed("cancelled"),
            )
        except memory.ConnectionClosed as exc:
            raise _Lost(str(exc)) from None
        except memory.MemoryBrokerError as exc:
            raise EventError(f"cannot declare the consumer's queues: {exc}") from None

    async def finish(self, token: Any, delivery: Delivery, decision: Decision) -> None:
        b, c = self._broker, self._connection
        try:
            if not isinstance(decision, Ack):
                outcome = await _confirmed(b.publish(c, republish(delivery, decision)))
                if outcome != ACKED:
                    b.nack(c, self._tag, token, requeue=True)
                    self.lost.set()
                    raise _Lost(f"could not move the message to {decision.queue}: {outcome}")
            b.ack(c, self._tag, token)
        except memory.MemoryBrokerError as exc:
            raise _Lost(str(exc)) from None

    async def reject(self, token: Any) -> None:
        with contextlib.suppress(memory.MemoryBrokerError):
            self._broker.nack(self._connection, self._tag, token, requeue=True)

    async def stop_consuming(self) -> None:
        self._broker.cancel(self._tag)

    async def close(self) -> None:
        self._connection.close()


class EventConsumer:
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    The asyncio twin of :class:`svclink.sync.EventConsumer`: handlers are ``async def``,
    and up to ``prefetch`` of them run at once.
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
        )
        self.connection_name = connection_name or _default_name(self.settings, f"consumer:{queue}")
        self._table: HandlerTable[Handler] = HandlerTable()
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

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
        return ConsumerConfig(
            queue=self.config.queue,
            exchange=self.config.exchange,
            bindings=self._bindings or self._table.patterns(),
            max_attempts=self.config.max_attempts,
            retry_delays=self.config.retry_delays,
            prefetch=self.config.prefetch,
            queue_type=self.config.queue_type,
        )

    async def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away."""
        config = self._effective_config()
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested.is_set():
            self._wakeup.set()
        failures = 0
        try:
            while not self._stop_requested.is_set():
                topo = topology(config)
                session: _Session
                if _is_memory(self.settings):
                    session = _MemorySession(self.settings, self.connection_name, topo, config.prefetch)
                else:
                    session = _PikaSession(self.settings, self.connection_name, topo, config.prefetch)
                try:
                    lost = await self._serve(session, config)
                except _Lost as exc:
                    lost = str(exc)
                finally:
                    await session.close()
                if lost is not None:
                    failures += 1
                    log.warning("consumer %s: %s; reconnecting", config.queue, lost)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), reconnect_delay(failures))
                else:
                    failures = 0
        finally:
            self._stop_requested.clear()
            self._loop = self._wakeup = None

    async def _serve(self, session: _Session, config: ConsumerConfig) -> str | None:
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
            except _Lost as exc:
                log.warning("consumer %s: %s", config.queue, exc)
            except _AMQP_LOST as exc:
                log.warning(
                    "consumer %s: could not settle a message (%r); it will be redelivered", config.queue, exc
                )
                session.lost.set()
            finally:
                in_flight.discard(task)

        await session.start(on_delivery)
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
