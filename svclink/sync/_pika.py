"""What the sync side's pika publisher and consumer share: connection parameters, the
message properties both ways, the exceptions that mean a lost connection, and the
connection class that writes each message at once.

The publisher link is in :mod:`._pika_link`, the consumer session in :mod:`._pika_session`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from .._tls import context, failure_of
from .._version import __version__
from ..core.events.broker import ConnectFailure, DeclareRefusal, Refusal, broker_address
from ..core.events.message import Properties
from ..core.settings import Settings
from ..core.tls import broker_tls

try:  # pika's own transport class, for writing to its socket at once (OneWriteConnection._send_now)
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


def connect_failure(url: str, settings: Settings, detail: str, error: BaseException | str) -> ConnectFailure:
    """How connecting to ``url`` failed, ``error`` classified for the core."""
    tls = broker_tls(settings, url)
    refused = (
        failure_of(error, tls.config.sends_client_cert) if tls and isinstance(error, BaseException) else None
    )
    hostname = tls.server_hostname if tls else None
    return ConnectFailure(broker_address(url).safe, detail, connect_refusal(error), refused, hostname)


def connect_refusal(error: object) -> Refusal | None:
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


def pika_properties(properties: Properties) -> pika.BasicProperties:
    """The wire properties, persistent; the headers as svclink encoded them when it did."""
    fields = properties.basic()
    if properties.table is not None:
        return _EncodedHeaders(properties.table, delivery_mode=_PERSISTENT, **fields)
    # pika only reads the headers (to encode them): the read-only view goes as it is, uncopied
    return pika.BasicProperties(headers=properties.headers, delivery_mode=_PERSISTENT, **fields)


def core_properties(properties: pika.BasicProperties) -> Properties:
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


class OneWriteConnection(pika.SelectConnection):  # type: ignore[misc]  # pika is untyped
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


#: what pika raises when a connection or channel is gone
PIKA_LOST = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
)
#: what ``BlockingConnection()`` raises for a broker it cannot reach or that does not answer; pika
#: hands back some causes unwrapped, e.g. ``AMQPConnectorStackTimeout`` for a handshake that hangs
CONNECT_FAILED = (*PIKA_LOST, AMQPConnectorException, OSError)


def declare_refusal(exc: BaseException) -> DeclareRefusal:
    """The refusal behind a channel the broker closed (pika's ``ChannelClosed`` carries the reply code)."""
    return DeclareRefusal.of(getattr(exc, "reply_code", None))
