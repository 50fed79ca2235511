"""Events over pika: a thread- and fork-safe publisher and a blocking consumer.

Only I/O lives here. What goes on the wire (envelope, headers, routing key), what an
outcome means (which exception) and what becomes of a consumed message (ack, retry,
dead-letter) are decided in :mod:`svclink.core.events` and :mod:`svclink.core.consuming`.

The publisher drives a ``pika.SelectConnection`` on its own ``IOLoop``, one per (process,
thread), running the loop only while a publish waits; that gives a real publish timeout
(``BlockingConnection`` waits for a confirm forever) through pika's public API. The
consumer uses ``pika.BlockingConnection`` and runs each handler on a worker thread while
the consumer thread keeps servicing the connection, so heartbeats flow during slow handlers.
``amqp_url="memory://"`` swaps both for the in-process broker of :mod:`svclink.testing`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_module
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop

from .._version import __version__
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

Handler = Callable[[Event], Any]
F = TypeVar("F", bound=Handler)


class _Lost(Exception):
    """The connection (or channel) is gone; whatever was in flight may be redelivered."""


def _is_memory(settings: Settings) -> bool:
    return settings.amqp_url[0].startswith("memory:")


def _parameters(url: str, settings: Settings, name: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = settings.amqp_heartbeat
    params.blocked_connection_timeout = settings.publish_timeout
    params.socket_timeout = settings.connect_timeout
    params.stack_timeout = settings.connect_timeout * 2
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name, "product": "svclink", "version": __version__}
    return params


def _pika_properties(properties: Properties) -> pika.BasicProperties:
    return pika.BasicProperties(
        headers=dict(properties.headers),
        message_id=properties.message_id,
        type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
        timestamp=properties.timestamp,
        content_type=properties.content_type,
        delivery_mode=pika.DeliveryMode.Persistent,
    )


def _core_properties(properties: pika.BasicProperties) -> Properties:
    return Properties(
        headers=properties.headers or {},
        message_id=properties.message_id,
        type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
        timestamp=properties.timestamp,
        content_type=properties.content_type,
    )


def _default_name(settings: Settings, role: str) -> str:
    return f"svclink:{settings.service_name or 'app'}:{role}"


# -- publishing -------------------------------------------------------------------------


class _PublishLink(Protocol):
    pid: int

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]: ...

    def close(self) -> None: ...


class _PikaLink:
    """One publisher connection + confirm channel, driven by running its IOLoop until a condition holds."""

    def __init__(self, settings: Settings, name: str, deadline: float) -> None:
        self.pid = os.getpid()
        self._settings = settings
        self._ioloop = IOLoop()
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._until: Callable[[], bool] | None = None
        self._state = "new"
        self._error: str = ""
        self._declared: set[str] = set()
        self._next_tag = 1
        self._outcomes: dict[int, str] = {}
        self._returned: set[str] = set()
        self._tag_ids: dict[int, str] = {}
        errors = []
        for url in settings.amqp_url:
            try:
                self._open(_parameters(url, settings, name), deadline)
                return
            except _Lost as exc:
                errors.append(str(exc))
                self._discard()
        self._ioloop.close()
        raise BrokerUnavailable(f"cannot connect to the broker: {'; '.join(errors)}")

    # driving the loop

    def _poke(self) -> None:
        if self._until is not None and self._until():
            self._ioloop.stop()

    def _wait(self, until: Callable[[], bool], deadline: float) -> bool:
        """Run the IOLoop until ``until()`` holds, the connection closes, or ``deadline`` passes."""

        def done() -> bool:
            return until() or self._state in ("closed", "failed")

        if not done() and time.monotonic() < deadline:
            self._until = done
            timer = self._ioloop.call_later(max(0.0, deadline - time.monotonic()), self._ioloop.stop)
            try:
                self._ioloop.start()
            finally:
                self._until = None
                self._ioloop.remove_timeout(timer)
        return until()

    def _flag(self) -> tuple[list[bool], Callable[[Any], None]]:
        """A flag (a list, truthy once set) and the pika callback that sets it."""
        flag: list[bool] = []

        def set_flag(_frame: Any) -> None:
            flag.append(True)
            self._poke()

        return flag, set_flag

    def _spin(self) -> None:
        """One pass of the IOLoop without blocking: handle whatever input is already there."""
        if self._state in ("open", "connecting"):
            self._ioloop.call_later(0, self._ioloop.stop)
            self._ioloop.start()

    # opening

    def _open(self, params: pika.URLParameters, deadline: float) -> None:
        self._state, self._channel = "connecting", None
        self._connection = pika.SelectConnection(
            parameters=params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self._ioloop,
        )
        connect_deadline = min(deadline, time.monotonic() + self._settings.connect_timeout * 2)
        if not self._wait(lambda: self._state == "open", connect_deadline):
            raise _Lost(self._error or f"{params.host}:{params.port}: no connection in time")
        self._connection.channel(on_open_callback=self._on_channel_open)
        if not self._wait(lambda: self._channel is not None, deadline):
            raise _Lost(self._error or "no channel in time")
        self._channel.add_on_close_callback(self._on_channel_closed)
        self._channel.add_on_return_callback(self._on_return)
        selected, on_selected = self._flag()
        self._channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_selected)
        if not self._wait(lambda: bool(selected), deadline):
            raise _Lost(self._error or "confirm mode not enabled in time")

    def _on_open(self, _connection: Any) -> None:
        self._state = "open"
        self._poke()

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self._state, self._error = "failed", str(error) or type(error).__name__
        self._poke()

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self._state, self._error = "closed", str(reason) or type(reason).__name__
        self._poke()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        self._poke()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._state, self._error = "closed", f"channel closed: {reason}"
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        self._poke()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        outcome = ACKED if isinstance(method, pika.spec.Basic.Ack) else NACKED
        tags = (
            [t for t in self._tag_ids if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            message_id = self._tag_ids.pop(tag, None)
            if outcome == ACKED and message_id is not None and message_id in self._returned:
                self._returned.discard(message_id)
                self._outcomes[tag] = RETURNED
            else:
                self._outcomes[tag] = outcome
        self._poke()

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.add(properties.message_id or "")

    # publishing

    def _declare(self, exchange: str, deadline: float) -> None:
        if exchange == "" or exchange in self._declared:
            return
        done, on_done = self._flag()
        self._channel.exchange_declare(
            exchange=exchange, exchange_type="topic", durable=True, callback=on_done
        )
        if not self._wait(lambda: bool(done), deadline):
            if self._state == "closed" and "PRECONDITION_FAILED" in self._error:
                raise EventError(f"exchange {exchange!r} exists with other settings: {self._error}")
            raise _Lost(self._error or "exchange not declared in time")
        self._declared.add(exchange)

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]:
        """Publish ``messages`` pipelined and wait for all their confirms; one outcome each.

        Raises :class:`_Lost` when the connection turns out to be dead before anything was sent
        (an idle connection the broker dropped), so the caller can reopen and send once.
        """
        self._spin()  # read what arrived while idle (the broker's close, say)
        self._spin()
        if self._state != "open":
            raise _Lost(self._error or "connection closed while idle")
        for exchange in {m.exchange for m in messages}:
            self._declare(exchange, deadline)
        tags = []
        for message in messages:
            tag, self._next_tag = self._next_tag, self._next_tag + 1
            self._tag_ids[tag] = message.properties.message_id or ""
            tags.append(tag)
            self._channel.basic_publish(
                exchange=message.exchange,
                routing_key=message.routing_key,
                body=message.body,
                properties=_pika_properties(message.properties),
                mandatory=message.mandatory,
            )
        self._wait(lambda: all(t in self._outcomes for t in tags), deadline)
        lost = LOST if self._state != "open" else TIMED_OUT
        return [self._outcomes.pop(t, lost) for t in tags]

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            connection.close()
            self._wait(lambda: self._state == "closed", time.monotonic() + 1.0)

    def close(self) -> None:
        self._discard()
        self._ioloop.close()


class _MemoryLink:
    """The publisher's connection to the in-process broker."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.pid = os.getpid()
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._connection = self._broker.connect(name)

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]:
        if self._connection.closed:
            raise _Lost(self._connection.close_reason or "closed")
        confirms = []
        try:
            for exchange in {m.exchange for m in messages} - {""}:
                self._broker.declare_exchange(self._connection, exchange, "topic")
            for message in messages:
                confirms.append(self._broker.publish(self._connection, message))
        except memory.ConnectionClosed as exc:
            if not confirms:
                raise _Lost(str(exc)) from None
        except memory.MemoryBrokerError as exc:
            raise EventError(f"the broker refused the publish: {exc}") from None
        outcomes = [c.wait(max(0.0, deadline - time.monotonic())) or TIMED_OUT for c in confirms]
        outcomes += [LOST] * (len(messages) - len(confirms))
        return [LOST if o == "closed" else o for o in outcomes]

    def close(self) -> None:
        self._connection.close()


class Publisher:
    """Publishes events with confirms; safe to share between threads and across ``fork()``.

    Each (process, thread) gets its own connection, opened on first use, so a forked
    child never touches its parent's socket and threads never share a channel.
    """

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.connection_name = connection_name or _default_name(self.settings, "publisher")
        self._local = threading.local()

    def _link(self, deadline: float) -> _PublishLink:
        link: _PublishLink | None = getattr(self._local, "link", None)
        if link is None or link.pid != os.getpid():  # a fork's child drops its parent's link untouched
            if _is_memory(self.settings):
                link = _MemoryLink(self.settings, self.connection_name)
            else:
                link = _PikaLink(self.settings, self.connection_name, deadline)
            self._local.link = link
        return link

    def _drop(self) -> None:
        link = getattr(self._local, "link", None)
        self._local.link = None
        if link is not None and link.pid == os.getpid():
            with contextlib.suppress(Exception):
                link.close()

    def publish(
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

        Raises :class:`~svclink.InvalidEvent` before any I/O for a bad type or payload,
        :class:`~svclink.UnroutableError` when no queue is bound for it,
        :class:`~svclink.PublishNacked`, :class:`~svclink.PublishTimeout`, or
        :class:`~svclink.BrokerUnavailable` when no broker can be reached.
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
        error = self._send([message], timeout)[0]
        if error is not None:
            raise error
        return event

    def publish_many(
        self,
        events: Iterable[tuple[str, Any]],
        *,
        exchange: str | None = None,
        timeout: float | None = None,
    ) -> list[Event]:
        """Publish ``(event_type, data)`` pairs pipelined, waiting once for all their confirms.

        All are sent even if some fail; then the first failure is raised, with
        ``published`` (the events confirmed) and ``failed`` (``(event, error)`` pairs)
        attached to it.
        """
        now, wall = datetime.now(UTC), time.time()
        prepared = [
            prepare(self.settings, t, d, exchange=exchange, event_id=None, occurred_at=now, wall=wall)
            for t, d in events
        ]
        if not prepared:
            return []
        errors = self._send([m for _, m in prepared], timeout)
        failed = [(e, err) for (e, _), err in zip(prepared, errors, strict=True) if err is not None]
        if failed:
            first = failed[0][1]
            first.published = [e for (e, _), err in zip(prepared, errors, strict=True) if err is None]  # type: ignore[attr-defined]
            first.failed = failed  # type: ignore[attr-defined]
            raise first
        return [e for e, _ in prepared]

    def _send(self, messages: Sequence[OutgoingMessage], timeout: float | None) -> list[Exception | None]:
        """Send with one reopen: messages that never reached a live connection go again, once."""
        deadline = time.monotonic() + (self.settings.publish_timeout if timeout is None else timeout)
        results: list[Exception | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        for attempt in (1, 2):
            try:
                outcomes = self._link(deadline).publish([messages[i] for i in todo], deadline)
            except _Lost as exc:
                self._drop()
                if attempt == 2:
                    raise BrokerUnavailable(f"connection to the broker lost: {exc}") from None
                continue
            if any(o in (LOST, TIMED_OUT) for o in outcomes):
                self._drop()  # a connection that lost or never confirmed a message is not reused
            retry = []
            for i, outcome in zip(todo, outcomes, strict=True):
                if outcome == LOST and attempt == 1 and time.monotonic() < deadline:
                    retry.append(i)  # same event id: consumers can deduplicate the rare double
                else:
                    results[i] = publish_error(
                        TIMED_OUT if outcome == LOST and time.monotonic() >= deadline else outcome,
                        messages[i],
                    )
            if not retry:
                break
            todo = retry
        return results

    def close(self) -> None:
        """Close this thread's connection (the next publish opens a new one)."""
        self._drop()


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> Publisher:
    """The process's publisher for the installed settings (rebuilt when settings change)."""
    global _publisher
    settings = get_settings()
    with _publisher_lock:
        if _publisher is None or _publisher.settings is not settings:
            _publisher = Publisher(settings)
        return _publisher


# -- consuming --------------------------------------------------------------------------


class _Received:
    """A delivery plus what the session needs to settle it."""

    def __init__(self, delivery: Delivery, tag: int) -> None:
        self.delivery = delivery
        self.tag = tag


class _Session(Protocol):
    def next(self, timeout: float) -> _Received | None: ...

    def run(self, fn: Callable[[], BaseException | None]) -> BaseException | None: ...

    def finish(self, received: _Received, decision: Decision) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


_PIKA_LOST = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
)


class _PikaSession:
    """One consumer connection: declares the topology, consumes, runs handlers off-thread."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        params = [_parameters(u, settings, name) for u in settings.amqp_url]
        try:
            self._connection = pika.BlockingConnection(params)
        except _PIKA_LOST as exc:
            raise _Lost(f"cannot connect: {exc!r}") from None
        self._deliveries: deque[_Received] = deque()
        self._cancelled = False
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="svclink-handler")
        try:
            self._channel = self._connection.channel()
            self._declare(topo)
            self._channel.confirm_delivery()
            self._channel.basic_qos(prefetch_count=prefetch)
            self._channel.add_on_cancel_callback(self._on_cancel)
            self._channel.basic_consume(topo.queue.name, self._on_message)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.close()
            raise EventError(f"cannot declare the consumer's queues: {exc.reply_text}") from None
        except _PIKA_LOST as exc:
            self.close()
            raise _Lost(repr(exc)) from None

    def _declare(self, topo: Topology) -> None:
        ch = self._channel
        ch.exchange_declare(topo.exchange, exchange_type="topic", durable=True)
        for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
            ch.queue_declare(spec.name, durable=True, arguments=dict(spec.arguments))
        for pattern in topo.bindings:
            ch.queue_bind(topo.queue.name, topo.exchange, routing_key=pattern)

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled = True

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = Delivery(
            body=body,
            properties=_core_properties(properties),
            exchange=method.exchange,
            routing_key=method.routing_key,
            redelivered=method.redelivered,
        )
        self._deliveries.append(_Received(delivery, method.delivery_tag))

    def _pump(self, timeout: float) -> None:
        try:
            self._connection.process_data_events(time_limit=timeout)
        except _PIKA_LOST as exc:
            raise _Lost(repr(exc)) from None
        if self._cancelled:
            raise _Lost("the broker cancelled the consumer (queue deleted?)")

    def next(self, timeout: float) -> _Received | None:
        if not self._deliveries:
            self._pump(timeout)
        return self._deliveries.popleft() if self._deliveries else None

    def run(self, fn: Callable[[], BaseException | None]) -> BaseException | None:
        """Run ``fn`` on the worker thread while this thread keeps the connection serviced."""
        future: Future[BaseException | None] = self._worker.submit(fn)
        future.add_done_callback(lambda _f: self.wake())
        try:
            while not future.done():
                self._pump(1.0)
        except _Lost:
            future.result()  # never two handlers at once: wait for this one, then reconnect
            raise
        return future.result()

    def finish(self, received: _Received, decision: Decision) -> None:
        try:
            if not isinstance(decision, Ack):
                message = republish(received.delivery, decision)
                try:
                    self._channel.basic_publish(
                        "", message.routing_key, message.body, _pika_properties(message.properties), True
                    )
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    self._channel.basic_nack(received.tag, requeue=True)
                    raise _Lost(f"could not move the message to {message.routing_key}: {exc!r}") from None
            self._channel.basic_ack(received.tag)
        except _PIKA_LOST as exc:
            raise _Lost(repr(exc)) from None

    def wake(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.add_callback_threadsafe(lambda: None)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        with contextlib.suppress(Exception):
            if self._connection.is_open:
                self._connection.close()


_LOST_SIGNAL = object()
_WAKE_SIGNAL = object()


class _MemorySession:
    """A consumer on the in-process broker; handlers run on the consumer thread."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._connection = self._broker.connect(name)
        self._inbox: queue_module.SimpleQueue[object] = queue_module.SimpleQueue()
        b, c = self._broker, self._connection
        try:
            b.declare_exchange(c, topo.exchange, "topic")
            for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
                b.declare_queue(c, spec.name, spec.arguments)
            for pattern in topo.bindings:
                b.bind(c, topo.queue.name, topo.exchange, pattern)
            c.add_close_callback(lambda _reason: self._inbox.put(_LOST_SIGNAL))
            self._tag = b.consume(
                c,
                topo.queue.name,
                self._inbox.put,
                prefetch=prefetch,
                on_cancel=lambda: self._inbox.put(_LOST_SIGNAL),
            )
        except memory.ConnectionClosed as exc:
            raise _Lost(str(exc)) from None
        except memory.MemoryBrokerError as exc:
            raise EventError(f"cannot declare the consumer's queues: {exc}") from None

    def next(self, timeout: float) -> _Received | None:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue_module.Empty:
            return None
        if item is _LOST_SIGNAL:
            raise _Lost(self._connection.close_reason or "connection closed")
        if not isinstance(item, memory.MemoryDelivery):
            return None
        message = item.message
        delivery = Delivery(
            message.body, message.properties, message.exchange, message.routing_key, item.redelivered
        )
        return _Received(delivery, item.delivery_tag)

    def run(self, fn: Callable[[], BaseException | None]) -> BaseException | None:
        return fn()

    def finish(self, received: _Received, decision: Decision) -> None:
        b, c = self._broker, self._connection
        try:
            if not isinstance(decision, Ack):
                outcome = b.publish(c, republish(received.delivery, decision)).wait(30.0)
                if outcome != ACKED:
                    b.nack(c, self._tag, received.tag, requeue=True)
                    raise _Lost(f"could not move the message to {decision.queue}: {outcome}")
            b.ack(c, self._tag, received.tag)
        except memory.MemoryBrokerError as exc:
            raise _Lost(str(exc)) from None

    def wake(self) -> None:
        self._inbox.put(_WAKE_SIGNAL)

    def close(self) -> None:
        self._connection.close()


class EventConsumer:
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    Register handlers with :meth:`on` (an event type or a pattern such as ``user.*``) and
    :meth:`default`, then call :meth:`run`, which blocks until :meth:`stop`.
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
        self._stopping = threading.Event()
        self._session: _Session | None = None

    def on(self, pattern: str) -> Callable[[F], F]:
        """Decorator: handle events whose type is ``pattern`` or matches it (``*``, ``#``)."""

        def register(handler: F) -> F:
            _check_sync(handler)
            self._table.add(pattern, handler)
            return handler

        return register

    def default(self, handler: F) -> F:
        """Decorator: handle every event no other handler matches (the same as ``on("#")``)."""
        _check_sync(handler)
        self._table.set_default(handler)
        return handler

    def stop(self) -> None:
        """Ask :meth:`run` to return once the message in hand is finished (any thread, or a handler)."""
        self._stopping.set()
        session = self._session
        if session is not None:
            session.wake()

    def _effective_config(self) -> ConsumerConfig:
        if not self._table:
            raise EventError("the consumer has no handlers: register one with @consumer.on(...)")
        bindings = self._bindings or self._table.patterns()
        return ConsumerConfig(
            queue=self.config.queue,
            exchange=self.config.exchange,
            bindings=bindings,
            max_attempts=self.config.max_attempts,
            retry_delays=self.config.retry_delays,
            prefetch=self.config.prefetch,
            queue_type=self.config.queue_type,
        )

    def _open(self, config: ConsumerConfig) -> _Session:
        topo = topology(config)
        if _is_memory(self.settings):
            return _MemorySession(self.settings, self.connection_name, topo, config.prefetch)
        return _PikaSession(self.settings, self.connection_name, topo, config.prefetch)

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away."""
        config = self._effective_config()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self._session = self._open(config)
                except _Lost as exc:
                    failures += 1
                    log.warning("consumer %s: broker unavailable (%s); retrying", config.queue, exc)
                    self._stopping.wait(reconnect_delay(failures))
                    continue
                failures = 0
                log.info("consumer %s: consuming", config.queue)
                try:
                    self._serve(self._session, config)
                except _Lost as exc:
                    failures += 1
                    log.warning("consumer %s: connection lost (%s); reconnecting", config.queue, exc)
                    self._stopping.wait(reconnect_delay(failures))
                finally:
                    session, self._session = self._session, None
                    session.close()
        finally:
            self._stopping.clear()

    def _serve(self, session: _Session, config: ConsumerConfig) -> None:
        while not self._stopping.is_set():
            received = session.next(0.5)
            if received is not None:
                session.finish(received, self._process(session, config, received))

    def _process(self, session: _Session, config: ConsumerConfig, received: _Received) -> Decision:
        step = receive(
            received.delivery, config, self._table, self.settings, now=time.monotonic(), wall=time.time()
        )
        if not isinstance(step, Handle):
            log_decision(config, received.delivery, step)
            return step
        log_incoming(step.incoming, "event")
        error = session.run(lambda: _call(step))
        decision = settle(received.delivery, config, error)
        log_decision(config, received.delivery, decision, step.event, error)
        return decision


def _call(step: Handle[Handler]) -> BaseException | None:
    """Run a handler with the publisher's request context bound; its exception is the outcome."""
    try:
        with bind(step.event.context):
            step.handler(step.event)
    except Exception as exc:
        return exc
    return None


def _check_sync(handler: Handler) -> None:
    import inspect

    if inspect.iscoroutinefunction(handler):
        raise TypeError("svclink.sync handlers must be plain functions; use svclink.aio for async def")
