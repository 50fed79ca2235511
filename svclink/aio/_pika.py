"""The aio side over aio-pika: a publisher link per event loop and a consumer session.

Connections are plain ``aio_pika.connect`` connections that svclink reopens itself (see
:mod:`svclink.aio.events` for why not ``connect_robust``). aio-pika opens them and
declares the topology; publishing, consuming and acking go straight to the aiormq
channel beneath it (``get_underlay_channel()``), which aio-pika itself calls. svclink
has its own message type, so aio-pika's ``Message`` and ``IncomingMessage`` would be a
copy made and dropped per message, and its consumer wrapper a second task per message:
together more than the rest of svclink's work on an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from types import MappingProxyType
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import ConnectionParameter
from aiormq import spec
from pamqp.common import FieldTable
from yarl import URL

from .._tls import context, failure_of
from ..core.errors import EventError
from ..core.events.acks import Acks
from ..core.events.broker import ConnectFailure, Refusal, broker_address, connect_exception
from ..core.events.exchanges import use_as_is, warn_existing
from ..core.events.handling import Ack, Decision, republish
from ..core.events.message import Delivery, OutgoingMessage, Properties
from ..core.events.outcomes import ACKED, LOST, NACKED, RETURNED, TIMED_OUT
from ..core.events.topology import QueueSpec, Topology
from ..core.settings import Settings
from ..core.tls import broker_tls
from ._confirm_deadlines import Deadlines
from ._loops import close_soon
from ._transport import Lost, OnDelivery

AMQP_LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
    RuntimeError,
)


class _TLSConnection(aio_pika.Connection):
    """aio-pika's connection, passing ``server_hostname`` on to the TLS handshake (the name a
    node's certificate is checked for when ``tls_server_hostname`` says another than the URL's)."""

    PARAMETERS = (
        *aio_pika.Connection.PARAMETERS,
        ConnectionParameter(name="server_hostname", parser=str, is_kwarg=True),
    )


async def _connect(settings: Settings, name: str) -> aio_pika.abc.AbstractConnection:
    """A connection to the first node of ``amqp_url`` that answers.

    This is what ``aio_pika.connect()`` does, plus closing the connection object when
    connecting fails: left unclosed, its ``__del__`` makes a ``close()`` coroutine that,
    outside a running loop, is never awaited (a RuntimeWarning, and a task never run).
    """
    failures = []
    properties: FieldTable = {"connection_name": name, "product": "svclink"}
    for url in settings.amqp_url:
        address = broker_address(url)
        target = URL(address.url).update_query(heartbeat=str(settings.amqp_heartbeat))
        tls = broker_tls(settings, url)
        connection: aio_pika.Connection
        if tls is None:
            connection = aio_pika.Connection(target, client_properties=properties)
        else:  # amqps://: svclink's shared context, the node's name checked
            if tls.external:
                target = target.update_query(auth="external")
            connection = _TLSConnection(
                target,
                ssl_context=context(tls.config),
                server_hostname=tls.server_hostname,
                client_properties=properties,
            )
        try:
            await connection.connect(timeout=settings.connect_timeout)
        except (TimeoutError, aiormq.exceptions.InvalidFrameError, *AMQP_LOST) as exc:
            close_soon(connection.close())
            refused = failure_of(exc, tls.config.sends_client_cert) if tls else None
            hostname = tls.server_hostname if tls else None
            failures.append(ConnectFailure(address.safe, repr(exc), _refusal(exc), refused, hostname))
            continue
        except BaseException:  # cancelled (the caller's deadline), or anything unexpected
            close_soon(connection.close())
            raise
        return connection
    raise connect_exception(failures)


def _refusal(error: BaseException) -> Refusal | None:
    """What aiormq's error on opening a connection says the broker refused, if anything.

    aiormq reports a refused vhost as an unexpected frame: the broker's ``Connection.Close``
    where ``Connection.OpenOk`` was due.
    """
    if isinstance(error, aiormq.exceptions.ProbableAuthenticationError):
        return Refusal.LOGIN
    if isinstance(error, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(error):
        return Refusal.VHOST
    return None


class _EncodedHeaders(spec.Basic.Properties):
    """Basic properties whose headers go as the field table svclink encoded.

    pamqp encodes some header values otherwise than svclink sends them (a float as 32
    bits, say; see :mod:`svclink.core.events.fieldtable`): it encodes the other
    properties, and asks this class for the headers' bytes.
    """

    def __init__(self, table: bytes, **properties: Any) -> None:
        super().__init__(**properties)
        self._table = table

    def encode_property(self, name: str, value: Any) -> bytes:
        if name == "headers":
            return self._table
        return super().encode_property(name, value)


def _amqp_properties(properties: Properties) -> spec.Basic.Properties:
    """The wire properties, as aio-pika's ``Message(...).properties`` would make them."""
    stamp = properties.timestamp
    if properties.table is not None:
        return _EncodedHeaders(
            properties.table,
            headers=properties.headers,  # what pamqp sees is only its presence (the table is sent)
            content_type=properties.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_id=properties.message_id,
            timestamp=None if stamp is None else datetime.fromtimestamp(stamp, UTC),
            message_type=properties.type,
            app_id=properties.app_id,
            correlation_id=properties.correlation_id,
        )
    return spec.Basic.Properties(
        headers=dict(properties.headers),
        content_type=properties.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
        message_id=properties.message_id,
        timestamp=None if stamp is None else datetime.fromtimestamp(stamp, UTC),
        message_type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
    )


async def _underlay(channel: aio_pika.abc.AbstractChannel) -> aiormq.Channel:
    """The aiormq channel beneath ``channel``, as its own type (``basic_publish`` takes ``wait``)."""
    underlay = await channel.get_underlay_channel()
    if not isinstance(underlay, aiormq.Channel):
        raise TypeError(f"aio-pika gave a {type(underlay).__name__}, not an aiormq.Channel")
    return underlay


def _publish(
    channel: aiormq.Channel, message: OutgoingMessage, timeout: float | None = None
) -> Awaitable[aiormq.abc.ConfirmationFrameType | None]:
    """Publish with a confirm (awaiting it raises aiormq's ``PublishError`` when returned,
    ``DeliveryError`` when nacked); aiormq's own coroutine, with no coroutine of ours around it.

    ``wait=False``: the publish waits for its confirm, not also, under the channel's lock, for
    aiormq's writer task to hand its frames to the socket first. With the default, 50
    publishes in flight took turns, one frame and two passes of the event loop each; this
    way the writer sends what they queued together (``bench/run.py``: 0.91 of aio-pika's
    ``Exchange.publish`` with 50 in flight, against 1.04 to 1.08 with the default). The confirm
    cannot come before the frames are sent, and a connection lost first fails it, so a
    publish still ends only with its outcome.
    """
    return channel.basic_publish(
        message.body,
        exchange=message.exchange,
        routing_key=message.routing_key,
        properties=_amqp_properties(message.properties),
        mandatory=message.mandatory,
        timeout=timeout,
        wait=False,
    )


def _core_delivery(message: aiormq.abc.DeliveredMessage) -> Delivery:
    p = message.header.properties
    stamp = p.timestamp
    return Delivery(
        body=message.body,
        properties=Properties(
            # pamqp decoded the headers into a dict of their own: a read-only view needs no copy
            headers=MappingProxyType(p.headers or {}),
            message_id=p.message_id,
            type=p.message_type,
            app_id=p.app_id,
            correlation_id=p.correlation_id,
            timestamp=int(stamp.timestamp()) if isinstance(stamp, datetime) else None,
            content_type=p.content_type,
        ),
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
    )


#: a publisher connection unused for this long lets the loop run once before a publish
IDLE = 0.25


class PikaLink:
    """One connection + confirm channel, used by every task of one event loop."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aio_pika.abc.AbstractChannel,
        underlay: aiormq.Channel,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._underlay = underlay
        self._declared: set[str] = {""}  # the default exchange needs no declaring
        self._declaring = asyncio.Lock()  # 500 concurrent first publishes declare the exchange once
        self._deadlines = Deadlines()
        self._used = time.monotonic()

    @classmethod
    async def open(cls, settings: Settings, name: str) -> PikaLink:
        connection = await _connect(settings, name)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            underlay = await _underlay(channel)
        except AMQP_LOST as exc:
            close_soon(connection.close())
            raise Lost(f"cannot connect to the broker: no channel: {exc!r}") from None
        except asyncio.CancelledError:  # the publish's deadline passed: leave no open connection behind
            close_soon(connection.close())
            raise
        return cls(connection, channel, underlay)

    async def _declare(self, name: str) -> None:
        async with self._declaring:
            if name not in self._declared:
                try:
                    await self._channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
                except aiormq.exceptions.ChannelPreconditionFailed as exc:
                    raise EventError(f"exchange {name!r} exists with other settings: {exc}") from None
                self._declared.add(name)

    async def _one(self, message: OutgoingMessage, deadline: float) -> tuple[str]:
        """Publish ``message``, wait for its confirm; the outcome, in a tuple of one (see :meth:`publish`)."""
        try:
            with self._deadlines.wait(deadline):  # no loop timer per publish
                if message.exchange not in self._declared:
                    await self._declare(message.exchange)
                await _publish(self._underlay, message)
        except aiormq.exceptions.PublishError:
            return (RETURNED,)
        except aiormq.exceptions.DeliveryError:
            return (NACKED,)
        except TimeoutError:
            return (TIMED_OUT,)
        except AMQP_LOST:
            return (LOST,)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled
            # not a cancellation: aiormq fails the confirms in flight with the CancelledError its
            # connection closed with (another publish dropped it after a timeout, say)
            return (LOST,)
        finally:
            self._used = time.monotonic()
        return (ACKED,)

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> Awaitable[Sequence[str]]:
        """Publish ``messages`` concurrently on the channel and wait for their confirms; one outcome each.

        After an idle spell the loop runs once first, so the reader task sees a close that
        arrived meanwhile (with the loop stopped between ``asyncio.run()`` calls, say) and
        :class:`Lost` says nothing was sent. A link in steady use skips that: the loop ran
        moments ago, waiting for the last confirms. One message on a link in steady use,
        the common case, is awaited with no coroutine of this method's around it (each
        coroutine between a task and its wait is resumed at every step of the wait).
        """
        idle = time.monotonic() - self._used > IDLE
        if len(messages) == 1 and not idle:
            self._check_open()
            return self._one(messages[0], deadline)
        return self._publish_all(messages, deadline, idle)

    async def _publish_all(
        self, messages: Sequence[OutgoingMessage], deadline: float, idle: bool
    ) -> Sequence[str]:
        if idle:
            await asyncio.sleep(0)
        self._check_open()
        if len(messages) == 1:  # no task to wrap it in
            return await self._one(messages[0], deadline)
        return [outcome for (outcome,) in await asyncio.gather(*map(self._one, messages, repeat(deadline)))]

    def _check_open(self) -> None:
        if self._connection.is_closed or self._channel.is_closed:
            raise Lost("connection closed while idle")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()


async def _declare_exchange(
    connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel, name: str
) -> aio_pika.abc.AbstractExchange:
    """Declare the exchange on ``channel``, or use it as it is when it exists with another
    durability (declared first on a channel of its own, which the broker closes if refused)."""
    probe = await connection.channel(publisher_confirms=False)
    try:
        await probe.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        detail = exc.args[0] if exc.args else str(exc)
        if not use_as_is(str(detail)):
            raise
        warn_existing(name, str(detail))
        return await channel.get_exchange(name, ensure=True)
    finally:
        with contextlib.suppress(*AMQP_LOST):
            await probe.close()
    return await channel.get_exchange(name, ensure=False)


async def _declare_queue(
    channel: aio_pika.abc.AbstractChannel, spec: QueueSpec
) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(
        spec.name, durable=not spec.exclusive, exclusive=spec.exclusive, arguments=dict(spec.arguments)
    )


class PikaSession:
    """One consumer connection: declares the topology, consumes, and acks in as few frames as it can.

    aiormq runs each delivery as a task, so up to ``prefetch`` handlers run at once. A
    finished message's ack waits one pass of the event loop, for the others finishing on
    the same pass to join it in one frame (see :mod:`svclink.core.events.acks`).
    """

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._settings, self._name, self._topo, self._prefetch = settings, name, topo, prefetch
        self.lost = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._underlay: aiormq.Channel | None = None
        self._tag: str | None = None
        self._acks = Acks(prefetch)
        self._acking = False  # a task is sending the acks of this pass of the loop

    def _on_close(self, *_args: Any) -> None:
        self.lost.set()

    async def start(self, on_delivery: OnDelivery) -> None:
        self._connection = await _connect(self._settings, self._name)
        self._connection.close_callbacks.add(self._on_close)
        topo = self._topo
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            channel.close_callbacks.add(self._on_close)
            underlay = self._underlay = await _underlay(channel)
            underlay.on_consumer_cancel_callbacks.add(self._on_close)  # the queue was deleted, say
            await channel.set_qos(prefetch_count=self._prefetch)
            exchange = await _declare_exchange(self._connection, channel, topo.exchange)
            for spec_ in (*topo.retry_queues, topo.dead_queue):
                await _declare_queue(channel, spec_)
            queue = await _declare_queue(channel, topo.queue)
            for pattern in topo.bindings:
                await queue.bind(exchange, routing_key=pattern)

            async def deliver(message: aiormq.abc.DeliveredMessage) -> None:
                tag = message.delivery_tag or 0
                self._acks.delivered(tag)  # before any await: tasks start in delivery order
                await on_delivery(_core_delivery(message), tag)

            consuming = await underlay.basic_consume(queue.name, deliver, no_ack=False)
            self._tag = consuming.consumer_tag
        except aiormq.exceptions.ChannelClosed as exc:
            await self.close()
            if isinstance(
                exc, (aiormq.exceptions.ChannelPreconditionFailed, aiormq.exceptions.ChannelAccessRefused)
            ):
                raise EventError(f"cannot declare the consumer's queues: {exc}") from None
            raise Lost(repr(exc)) from None
        except AMQP_LOST as exc:
            await self.close()
            raise Lost(repr(exc)) from None

    async def finish(self, token: Any, delivery: Delivery, decision: Decision) -> None:
        """Carry out ``decision``: republish a copy if it says so (confirmed), then ack.

        Any failure marks the session lost: the message stays unacked and is redelivered
        after the reconnect (which also declares a deleted delay or dead queue again).
        """
        tag: int = token
        underlay = self._underlay
        assert underlay is not None
        try:
            if not isinstance(decision, Ack):
                copy = republish(delivery, decision)
                try:
                    await _publish(underlay, copy, 30)
                except (aiormq.exceptions.DeliveryError, TimeoutError) as exc:
                    await underlay.basic_nack(tag, requeue=True)
                    self._acks.settled(tag)  # only now: until the nack is out, no multiple ack may cover it
                    raise Lost(f"could not move the message to {copy.routing_key}: {exc!r}") from None
            self._acks.finished(tag)
            if not self._acking:
                self._acking = True
                try:
                    await asyncio.sleep(0)  # the handlers finishing on this pass of the loop join in
                    await self._send_acks(underlay)
                finally:
                    self._acking = False
        except AMQP_LOST as exc:
            self.lost.set()
            raise Lost(f"could not settle a message ({exc!r}); it will be redelivered") from None
        except Lost:
            self.lost.set()
            raise

    async def _send_acks(self, underlay: aiormq.Channel) -> None:
        while frames := self._acks.take():  # and those that finished while this one was sent
            for frame in frames:
                await underlay.basic_ack(frame.tag, multiple=frame.multiple)

    async def reject(self, token: Any) -> None:
        if self._underlay is not None:
            with contextlib.suppress(*AMQP_LOST):
                await self._underlay.basic_nack(token, requeue=True)
        self._acks.settled(token)  # only now: until the nack is out, no multiple ack may cover it

    async def stop_consuming(self) -> None:
        if self._underlay is not None and self._tag is not None and not self.lost.is_set():
            with contextlib.suppress(*AMQP_LOST, TimeoutError):
                await self._underlay.basic_cancel(self._tag, timeout=5)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
