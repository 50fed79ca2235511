"""What the aio side's aio-pika publisher and consumer share: connecting, the message properties
both ways, the raw publish, and the exceptions that mean a lost connection.

Connections are plain ``aio_pika.connect`` connections that svclink reopens itself (see
:mod:`svclink.aio.publishing` for why not ``connect_robust``). aio-pika opens them and
declares the topology; publishing, consuming and acking go straight to the aiormq
channel beneath it (``get_underlay_channel()``), which aio-pika itself calls. svclink
has its own message type, so aio-pika's ``Message`` and ``IncomingMessage`` would be a
copy made and dropped per message, and its consumer wrapper a second task per message:
together more than the rest of svclink's work on an event.

The publisher link is in :mod:`._pika_link`, the consumer session in :mod:`._pika_session`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from datetime import UTC, datetime
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
from ..core.events.broker import ConnectFailure, DeclareRefusal, Refusal, broker_address, connect_exception
from ..core.events.existing import durable, refused_exchange, warn_existing
from ..core.events.message import Delivery, OutgoingMessage, Properties
from ..core.settings import Settings
from ..core.tls import broker_tls
from ._loops import close_soon

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


async def connect(settings: Settings, name: str) -> aio_pika.abc.AbstractConnection:
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
            failures.append(ConnectFailure(address.safe, repr(exc), connect_refusal(exc), refused, hostname))
            continue
        except BaseException:  # cancelled (the caller's deadline), or anything unexpected
            close_soon(connection.close())
            raise
        return connection
    raise connect_exception(failures)


def connect_refusal(error: BaseException) -> Refusal | None:
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


def amqp_properties(properties: Properties) -> spec.Basic.Properties:
    """The wire properties, as aio-pika's ``Message(...).properties`` would make them."""
    stamp = properties.timestamp
    fields: dict[str, Any] = {
        "content_type": properties.content_type,
        "delivery_mode": aio_pika.DeliveryMode.PERSISTENT.value,
        "message_id": properties.message_id,
        "timestamp": None if stamp is None else datetime.fromtimestamp(stamp, UTC),
        "message_type": properties.type,
        "app_id": properties.app_id,
        "correlation_id": properties.correlation_id,
    }
    if properties.table is not None:
        # what pamqp sees of the headers is only their presence (the table is sent)
        return _EncodedHeaders(properties.table, headers=properties.headers, **fields)
    return spec.Basic.Properties(headers=dict(properties.headers), **fields)


async def underlay_of(channel: aio_pika.abc.AbstractChannel) -> aiormq.Channel:
    """The aiormq channel beneath ``channel``, as its own type (``basic_publish`` takes ``wait``)."""
    underlay = await channel.get_underlay_channel()
    if not isinstance(underlay, aiormq.Channel):
        raise TypeError(f"aio-pika gave a {type(underlay).__name__}, not an aiormq.Channel")
    return underlay


def publish(
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
        properties=amqp_properties(message.properties),
        mandatory=message.mandatory,
        timeout=timeout,
        wait=False,
    )


def core_delivery(message: aiormq.abc.DeliveredMessage) -> Delivery:
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


#: the channel errors aiormq raises, by the AMQP reply code each stands for
_REFUSALS = {
    aiormq.exceptions.ChannelAccessRefused: DeclareRefusal.ACCESS_REFUSED,
    aiormq.exceptions.ChannelNotFoundEntity: DeclareRefusal.NOT_FOUND,
    aiormq.exceptions.ChannelLockedResource: DeclareRefusal.LOCKED,
    aiormq.exceptions.ChannelPreconditionFailed: DeclareRefusal.CONFLICT,
}


def declare_refusal(exc: aiormq.exceptions.ChannelClosed) -> DeclareRefusal:
    """The refusal behind a channel the broker closed (aiormq raises one class per reply code)."""
    for kind, meaning in _REFUSALS.items():
        if isinstance(exc, kind):
            return meaning
    return DeclareRefusal.of(exc.args[0] if exc.args and isinstance(exc.args[0], int) else None)


async def ensure_exchange(
    connection: aio_pika.abc.AbstractConnection, settings: Settings, name: str, *, consumer: bool
) -> None:
    """Declare topic exchange ``name`` as core says (see :mod:`svclink.core.events.existing`), on
    channels of their own: the broker closes the channel it refuses a declaration on."""
    refused = await _declare_on_own_channel(connection, name, durable=durable(settings, name))
    if refused is None:
        return
    error = refused_exchange(name, *refused, consumer=consumer)
    if error is None:  # it exists with another durability: use it as it is
        again = await _declare_on_own_channel(connection, name, passive=True)
        error = None if again is None else refused_exchange(name, *again, consumer=consumer)
    if error is not None:
        raise error
    warn_existing(name, refused[1])


async def _declare_on_own_channel(
    connection: aio_pika.abc.AbstractConnection, name: str, *, durable: bool = True, passive: bool = False
) -> tuple[DeclareRefusal, str] | None:
    """Declare exchange ``name`` on a new channel; why the broker refused, or None."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=durable, passive=passive)
    except aiormq.exceptions.ChannelClosed as exc:
        return declare_refusal(exc), str(exc.args[1] if len(exc.args) > 1 else exc)
    finally:
        with contextlib.suppress(*AMQP_LOST):
            await channel.close()
    return None
