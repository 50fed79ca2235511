"""The sync side over pika: a publisher link on a ``SelectConnection`` and a blocking consumer session.

The publisher drives a ``pika.SelectConnection`` on its own ``IOLoop``, polling the loop
only while a publish waits; that gives a real publish timeout (``BlockingConnection``
waits for a confirm forever) through pika's public API. It polls the way
``BlockingConnection`` does (``poll()`` and ``process_timeouts()`` on a poller activated
once), not with ``start()``/``stop()``, which make and close an epoll set and write a
wake-up byte every time: three times per publish, a third of its time.

The consumer uses ``pika.BlockingConnection`` and runs each handler on its own thread,
inline: handing every message to a worker thread and back costs more than the rest of
consuming it. A connection that goes unserviced misses heartbeats, though, so a handler
that runs longer than :data:`QUIET` lends the connection to a keeper thread, which
services it until the handler returns. pika's connection is not thread-safe; it is never
used by two threads at once: whoever holds the session's lock may use it, and the
consumer thread holds it at all times except while a handler runs.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from .._tls import context, failure_of
from .._version import __version__
from ..core.errors import EventError
from ..core.events.acks import AckFrame, Acks
from ..core.events.broker import ConnectFailure, Refusal, broker_address, connect_error, connect_exception
from ..core.events.exchanges import use_as_is, warn_existing
from ..core.events.handling import Ack, Decision, republish
from ..core.events.message import Delivery, OutgoingMessage, Properties
from ..core.events.outcomes import ACKED, LOST, NACKED, RETURNED, TIMED_OUT
from ..core.events.topology import Topology
from ..core.settings import Settings
from ..core.tls import broker_tls
from ._transport import Lost, Received

try:  # pika's own transport class, for writing to its socket at once (_OneWriteConnection._send_now)
    from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport as _PlaintextTransport
except ImportError:  # a pika that renamed it: no transport is an instance of (), every write goes pika's way
    _PlaintextTransport = ()


def parameters(url: str, settings: Settings, name: str) -> pika.URLParameters:
    """pika's parameters for the node ``url``: svclink's timeouts, heartbeat and TLS."""
    params = pika.URLParameters(broker_address(url).url)
    tls = broker_tls(settings, url)
    if tls is not None:  # amqps://: svclink's shared context, the node's name checked
        params.ssl_options = pika.SSLOptions(context(tls.config), tls.server_hostname)
        if tls.external:
            params.credentials = pika.credentials.ExternalCredentials()
    params.heartbeat = settings.amqp_heartbeat
    params.blocked_connection_timeout = settings.publish_timeout
    params.socket_timeout = settings.connect_timeout
    params.stack_timeout = settings.connect_timeout * 2
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name, "product": "svclink", "version": __version__}
    return params


#: what ``pika.DeliveryMode.Persistent`` stands for, looked up once rather than on every publish
_PERSISTENT = pika.DeliveryMode.Persistent.value


def _failure(url: str, settings: Settings, detail: str, error: BaseException | str) -> ConnectFailure:
    """How connecting to ``url`` failed, ``error`` classified for the core."""
    tls = broker_tls(settings, url)
    refused = (
        failure_of(error, tls.config.sends_client_cert) if tls and isinstance(error, BaseException) else None
    )
    hostname = tls.server_hostname if tls else None
    return ConnectFailure(broker_address(url).safe, detail, _refusal(error), refused, hostname)


def _refusal(error: object) -> Refusal | None:
    """What pika's error on opening a connection says the broker refused, if anything."""
    if isinstance(error, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError)):
        return Refusal.LOGIN
    if isinstance(error, pika.exceptions.ProbableAccessDeniedError):
        return Refusal.VHOST
    if isinstance(error, pika.exceptions.ConnectionClosedByBroker) and error.reply_code in (403, 530):
        return Refusal.LOGIN if error.reply_code == 403 else Refusal.VHOST
    return None


class _EncodedHeaders(pika.BasicProperties):  # type: ignore[misc]  # pika is untyped
    """Basic properties whose headers go as the field table svclink encoded.

    pika cannot encode some header values svclink sends (a float, say; see
    :mod:`svclink.core.events.fieldtable`): pika encodes the other properties, and the
    table goes where its headers would, flagged as present.
    """

    def __init__(self, table: bytes, **properties: Any) -> None:
        super().__init__(**properties)
        self._table = table

    def encode(self) -> list[bytes]:
        pieces: list[bytes] = super().encode()  # one flags word (these properties need one), then theirs
        (flags,) = struct.unpack(">H", pieces[0])
        pieces[0] = struct.pack(">H", flags | self.FLAG_HEADERS)
        # the headers come after the content type and encoding, two pieces each (length, text)
        at = 1 + 2 * (self.content_type is not None) + 2 * (self.content_encoding is not None)
        pieces.insert(at, self._table)
        return pieces


def _pika_properties(properties: Properties) -> pika.BasicProperties:
    if properties.table is not None:
        return _EncodedHeaders(
            properties.table,
            message_id=properties.message_id,
            type=properties.type,
            app_id=properties.app_id,
            correlation_id=properties.correlation_id,
            timestamp=properties.timestamp,
            content_type=properties.content_type,
            delivery_mode=_PERSISTENT,
        )
    # pika only reads the headers (to encode them): the read-only view goes as it is, uncopied
    return pika.BasicProperties(
        headers=properties.headers,
        message_id=properties.message_id,
        type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
        timestamp=properties.timestamp,
        content_type=properties.content_type,
        delivery_mode=_PERSISTENT,
    )


def _core_properties(properties: pika.BasicProperties) -> Properties:
    # pika decoded the headers into a dict of their own: a read-only view needs no copy
    return Properties(
        headers=MappingProxyType(properties.headers or {}),
        message_id=properties.message_id,
        type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
        timestamp=properties.timestamp,
        content_type=properties.content_type,
    )


class _OneWriteConnection(pika.SelectConnection):  # type: ignore[misc]  # pika is untyped
    """A ``SelectConnection`` that hands each message's frames to its socket as one write.

    pika queues the method, header and body frames of a publish as separate buffers, and
    its transport sends each with a ``send()`` of its own: three system calls per publish,
    each waking the broker, where one does (on loopback, 50-60 us of an 800 us sequential
    publish). pika's counters stay right; the rest is pika's. Should a pika release rename
    the method, publishing still works, three writes again (``bench/`` would show it).

    The write goes to the socket at once when nothing is queued before it. pika's
    transport only queues it and asks the poller to report the socket writable, so a
    publish cost a poll more and the two ``epoll_ctl`` calls that switch the watch on
    and off. What the socket does not take now (a full buffer, an error) goes to the
    transport as before, which sends it, or meets the error and reports it, the usual way.
    """

    def _output_marshaled_frames(self, marshaled_frames: Sequence[bytes]) -> None:
        data = b"".join(marshaled_frames)
        self.bytes_sent += len(data)
        self.frames_sent += len(marshaled_frames)
        sent = self._send_now(data)
        if sent < len(data):
            self._adapter_emit_data(data[sent:])

    def _send_now(self, data: bytes) -> int:
        """How much of ``data`` the socket took at once: 0 unless the plaintext transport is
        active with nothing queued (TLS, and anything pika may change, keep pika's way)."""
        transport = getattr(self, "_transport", None)
        if not isinstance(transport, _PlaintextTransport) or transport._state != transport._STATE_ACTIVE:
            return 0
        if transport.get_write_buffer_size():
            return 0
        try:
            return int(transport._sock.send(data))
        except OSError:  # would block, or a broken connection, which the transport reports
            return 0


#: a publisher connection unused for this long is checked for what arrived meanwhile before a publish
IDLE = 0.25


class PikaLink:
    """One publisher connection + confirm channel, driven by running its IOLoop until a condition holds."""

    def __init__(self, settings: Settings, name: str, deadline: float) -> None:
        self.pid = os.getpid()
        self._settings = settings
        self._ioloop = IOLoop()
        self._ioloop.activate_poller()  # for the link's life; IOLoop.close() releases it
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._state = "new"
        self._error: str = ""
        self._declared = {""}  # exchanges known to exist (the default one always does)
        self._next_tag = 1
        self._outcomes: dict[int, str] = {}
        self._returned: set[str] = set()
        self._tag_ids: dict[int, str] = {}
        self._used = time.monotonic()
        self._open_error: BaseException | str = ""
        failures = []
        for url in settings.amqp_url:
            try:
                self._open(parameters(url, settings, name), deadline)
                return
            except Lost as exc:
                failures.append(_failure(url, settings, str(exc), self._open_error))
                self._discard()
        self._ioloop.close()
        raise connect_error(failures)

    # driving the loop

    def _wait(self, until: Callable[[], bool], deadline: float) -> bool:
        """Run the IOLoop until ``until()`` holds, the connection closes, or ``deadline`` passes."""
        if until() or self._state in ("closed", "failed") or time.monotonic() >= deadline:
            return until()
        expired: list[bool] = []
        timer = self._ioloop.call_later(max(0.0, deadline - time.monotonic()), lambda: expired.append(True))
        try:
            while not (until() or self._state in ("closed", "failed") or expired):
                self._ioloop.poll()  # waits for I/O or the next timer (the deadline at the latest)
                self._ioloop.process_timeouts()
        finally:
            self._ioloop.remove_timeout(timer)
        return until()

    def _flag(self) -> tuple[list[bool], Callable[[Any], None]]:
        """A flag (a list, truthy once set) and the pika callback that sets it."""
        flag: list[bool] = []

        def set_flag(_frame: Any) -> None:
            flag.append(True)

        return flag, set_flag

    def _spin(self) -> None:
        """One pass of the IOLoop without blocking: handle whatever input is already there."""
        if self._state in ("open", "connecting"):
            timer = self._ioloop.call_later(0, lambda: None)  # so that poll() does not wait
            self._ioloop.poll()
            self._ioloop.process_timeouts()
            self._ioloop.remove_timeout(timer)  # already run: a no-op, unless poll() raised

    # opening

    def _open(self, params: pika.URLParameters, deadline: float) -> None:
        self._state, self._channel, self._error, self._open_error = "connecting", None, "", ""
        self._connection = _OneWriteConnection(
            parameters=params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self._ioloop,
        )
        connect_deadline = min(deadline, time.monotonic() + self._settings.connect_timeout * 2)
        if not self._wait(lambda: self._state == "open", connect_deadline):
            raise Lost(self._error or f"{params.host}:{params.port}: no connection in time")
        self._connection.channel(on_open_callback=self._on_channel_open)
        if not self._wait(lambda: self._channel is not None, deadline):
            raise Lost(self._error or "no channel in time")
        self._channel.add_on_close_callback(self._on_channel_closed)
        self._channel.add_on_return_callback(self._on_return)
        selected, on_selected = self._flag()
        self._channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_selected)
        if not self._wait(lambda: bool(selected), deadline):
            raise Lost(self._error or "confirm mode not enabled in time")

    def _on_open(self, _connection: Any) -> None:
        self._state = "open"

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self._state, self._open_error = "failed", error
        self._keep_reason(str(error) or type(error).__name__)

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self._state = "closed"
        self._keep_reason(str(reason) or type(reason).__name__)

    def _keep_reason(self, reason: str) -> None:
        """Remember why the link failed; the first reason stands.

        A channel the broker closed (``PRECONDITION_FAILED``, say) makes the link close its
        connection, and pika may read the broker's Close-Ok in the same pass: the
        connection's "Normal shutdown" that follows must not hide the broker's reason.
        """
        if not self._error:
            self._error = reason

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        if self._connection is None:  # _discard() is closing it: wait for the connection's own close
            return
        self._state = "closed"
        self._keep_reason(f"channel closed: {reason}")
        if self._connection.is_open:
            self._connection.close()

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

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.add(properties.message_id or "")

    # publishing

    def _declare(self, exchange: str, deadline: float) -> None:
        done, on_done = self._flag()
        self._channel.exchange_declare(
            exchange=exchange, exchange_type="topic", durable=True, callback=on_done
        )
        if not self._wait(lambda: bool(done), deadline):
            if self._state == "closed" and "PRECONDITION_FAILED" in self._error:
                raise EventError(f"exchange {exchange!r} exists with other settings: {self._error}")
            raise Lost(self._error or "exchange not declared in time")
        self._declared.add(exchange)

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]:
        """Publish ``messages`` pipelined and wait for all their confirms; one outcome each.

        Raises :class:`Lost` when the connection turns out to be dead before anything was sent
        (an idle connection the broker dropped), so the caller can reopen and send once.
        A connection in steady use is not checked first: the loop ran moments ago, waiting for
        the last confirms, and a close that arrives between two publishes is caught anyway,
        as a lost message that is sent again on a new connection.
        """
        if time.monotonic() - self._used > IDLE:
            self._spin()  # read what arrived while idle (the broker's close, say)
            self._spin()
        if self._state != "open":
            raise Lost(self._error or "connection closed while idle")
        for message in messages:
            if message.exchange not in self._declared:
                self._declare(message.exchange, deadline)
        tags = []
        for message in messages:
            tag = self._next_tag
            try:
                self._channel.basic_publish(
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    body=message.body,
                    properties=_pika_properties(message.properties),
                    mandatory=message.mandatory,
                )
            except pika.exceptions.AMQPError as exc:  # the channel closed under us: the rest are unsent
                self._state = "closed"
                self._keep_reason(repr(exc))
                break
            self._next_tag += 1
            self._tag_ids[tag] = message.properties.message_id or ""
            tags.append(tag)
        wanted = set(tags)
        self._wait(lambda: self._outcomes.keys() >= wanted, deadline)
        self._used = time.monotonic()
        lost = LOST if self._state != "open" else TIMED_OUT
        outcomes = [self._outcomes.pop(t, lost) for t in tags]
        return outcomes + [LOST] * (len(messages) - len(tags))

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            connection.close()
            self._wait(lambda: self._state == "closed", time.monotonic() + 1.0)

    def close(self) -> None:
        self._discard()
        self._ioloop.close()


_PIKA_LOST = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
)
#: what ``BlockingConnection()`` raises for a broker it cannot reach or that does not answer; pika
#: hands back some causes unwrapped, e.g. ``AMQPConnectorStackTimeout`` for a handshake that hangs
_CONNECT_FAILED = (*_PIKA_LOST, AMQPConnectorException, OSError)


def _blocking_connection(settings: Settings, name: str) -> pika.BlockingConnection:
    """A consumer's connection to the first node of ``amqp_url`` that takes one.

    Raises :class:`~svclink.EventError` when a node refused the login or the vhost (see
    :func:`~svclink.core.events.broker.connect_error`), :class:`Lost` when none answered.
    """
    failures = []
    for url in settings.amqp_url:
        try:
            return pika.BlockingConnection(parameters(url, settings, name))
        except _CONNECT_FAILED as exc:
            failures.append(_failure(url, settings, repr(exc), exc))
    raise connect_exception(failures)


#: a handler running longer than this has the connection serviced by the keeper thread meanwhile
QUIET = 0.2


class PikaSession:
    """One consumer connection: declares the topology, consumes, runs handlers inline.

    While a handler runs, the consumer thread lets go of the connection (the ``_io`` lock),
    and a keeper thread takes it if the handler is still running after :data:`QUIET`
    seconds, servicing it (heartbeats, deliveries within the prefetch) until the handler
    returns. The keeper looks every ``QUIET / 2`` seconds: a fast handler costs nothing
    but the lock's release and acquire, no thread switch.
    """

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._connection = _blocking_connection(settings, name)
        self._deliveries: deque[Received] = deque()
        self._acks = Acks(prefetch)
        self._cancelled = False
        self._io = threading.Lock()  # whoever holds it may use the connection
        self._io.acquire()  # the consumer thread, except while a handler runs
        self._handler: tuple[int, float] | None = None  # (number, monotonic start) of the running one
        self._overdue: tuple[float, Callable[[], None]] | None = None  # (when, what) if it runs too long
        self._handlers = 0
        self._serviced = False  # the keeper is servicing the connection for the running handler
        self._failure: str | None = None  # what the keeper found wrong with the connection
        self._closing = threading.Event()
        self._keeper: threading.Thread | None = None
        try:
            self._channel = self._connection.channel()
            self._declare(topo)
            self._channel.confirm_delivery()
            self._channel.basic_qos(prefetch_count=prefetch)
            self._channel.add_on_cancel_callback(self._on_cancel)
            self._tag = self._channel.basic_consume(topo.queue.name, self._on_message)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.close()
            if exc.reply_code == 405:  # RESOURCE_LOCKED: our old connection's exclusive queue, not yet gone
                raise Lost(f"queue locked: {exc.reply_text}") from None
            raise EventError(f"cannot declare the consumer's queues: {exc.reply_text}") from None
        except _PIKA_LOST as exc:
            self.close()
            raise Lost(repr(exc)) from None

    def _declare(self, topo: Topology) -> None:
        self._declare_exchange(topo.exchange)
        ch = self._channel
        for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
            durable, exclusive = not spec.exclusive, spec.exclusive
            ch.queue_declare(spec.name, durable=durable, exclusive=exclusive, arguments=dict(spec.arguments))
        for pattern in topo.bindings:
            ch.queue_bind(topo.queue.name, topo.exchange, routing_key=pattern)

    def _declare_exchange(self, name: str) -> None:
        """Declare the exchange, or use it as it is when it exists with another durability."""
        try:
            self._channel.exchange_declare(name, exchange_type="topic", durable=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406 or not use_as_is(exc.reply_text):
                raise
            self._channel = self._connection.channel()
            self._channel.exchange_declare(name, passive=True)
            warn_existing(name, exc.reply_text)

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
        self._deliveries.append(Received(delivery, method.delivery_tag))
        self._acks.delivered(method.delivery_tag)

    def _pump(self, timeout: float) -> None:
        try:
            self._connection.process_data_events(time_limit=timeout)
        except _PIKA_LOST as exc:
            raise Lost(repr(exc)) from None
        if self._cancelled:
            raise Lost("the broker cancelled the consumer (queue deleted?)")

    def next(self, timeout: float) -> Received | None:
        if not self._deliveries:
            self._pump(timeout)
        return self._deliveries.popleft() if self._deliveries else None

    def run(
        self, fn: Callable[[], BaseException | None], limit: float, overdue: Callable[[], None]
    ) -> BaseException | None:
        """Run ``fn`` on this thread; if it takes longer than ``QUIET``, the keeper services the
        connection meanwhile, and calls ``overdue`` (holding the connection) once ``fn`` has run
        ``limit`` seconds.

        Raises :class:`Lost` (once ``fn`` has returned) when the keeper found the connection
        gone or the consumer cancelled: the message cannot be settled on it.
        """
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="svclink-consumer-keeper", daemon=True)
            self._keeper.start()
        self._handlers += 1
        self._overdue = (time.monotonic() + limit, overdue)
        self._handler = (self._handlers, time.monotonic())
        self._io.release()
        try:
            outcome = fn()
        finally:
            self._handler = self._overdue = None
            if self._serviced:
                self.wake()  # the keeper is waiting for I/O: have it look up and let go
            self._io.acquire()
        if self._failure is not None or self._cancelled:
            raise Lost(self._failure or "the broker cancelled the consumer (queue deleted?)")
        return outcome

    def _keep(self) -> None:
        """The keeper thread: service the connection while a handler runs longer than ``QUIET``."""
        while not self._closing.wait(QUIET / 2):
            handler = self._handler
            if handler is None or time.monotonic() - handler[1] < QUIET:
                continue
            if not self._io.acquire(blocking=False):  # the handler has just returned
                continue
            try:
                self._serviced = True
                # the messages handled so far are done: no slow handler holds their acks back
                with contextlib.suppress(*_PIKA_LOST):  # (a lost connection: the loop below finds out)
                    self._send_acks(self._acks.take())
                while self._handler is handler and self._failure is None and not self._closing.is_set():
                    try:
                        self._connection.process_data_events(time_limit=self._until_overdue())
                    except _PIKA_LOST as exc:
                        self._failure = repr(exc)
            finally:
                self._serviced = False
                self._io.release()

    def _until_overdue(self) -> float:
        """Seconds (at most one) until the running handler is overdue; calls ``overdue`` once it is."""
        if self._overdue is None:
            return 1.0
        when, overdue = self._overdue
        left = when - time.monotonic()
        if left > 0:
            return min(1.0, left)
        self._overdue = None
        try:
            overdue()  # settles the message as failed, on this thread, which holds the connection
        except Lost as exc:
            self._failure = str(exc)
        return 1.0

    def reject(self, received: Received) -> None:
        try:
            self._channel.basic_nack(received.tag, requeue=True)
        except _PIKA_LOST as exc:
            raise Lost(repr(exc)) from None
        self._acks.settled(received.tag)

    def stop_consuming(self) -> None:
        try:
            self._channel.basic_cancel(self._tag)
        except _PIKA_LOST as exc:
            raise Lost(repr(exc)) from None

    def finish(self, received: Received, decision: Decision) -> None:
        try:
            if not isinstance(decision, Ack):
                message = republish(received.delivery, decision)
                try:
                    self._channel.basic_publish(
                        "", message.routing_key, message.body, _pika_properties(message.properties), True
                    )
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    self._send_acks(self._acks.take())
                    self._channel.basic_nack(received.tag, requeue=True)
                    self._acks.settled(received.tag)
                    raise Lost(f"could not move the message to {message.routing_key}: {exc!r}") from None
            self._acks.finished(received.tag)
            self._send_acks(self._acks.due(more_in_hand=bool(self._deliveries)))
        except _PIKA_LOST as exc:
            raise Lost(repr(exc)) from None

    def _send_acks(self, frames: list[AckFrame]) -> None:
        for frame in frames:
            self._channel.basic_ack(frame.tag, multiple=frame.multiple)

    def wake(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.add_callback_threadsafe(lambda: None)

    def close(self) -> None:
        """Close the connection (from the consumer thread, outside a handler: it holds the lock)."""
        self._closing.set()
        if self._keeper is not None:
            self._keeper.join()
        if self._connection.is_open:
            with contextlib.suppress(Exception):
                self._send_acks(self._acks.take())  # messages handled after stop() while their acks were held
            with contextlib.suppress(Exception):
                self._connection.close()
