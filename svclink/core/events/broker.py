"""What the sync and aio event drivers agree on about a broker: its failures and their words.

The drivers perform I/O and classify what their library reported: a connection gone
(:class:`Lost`), a connection refused (a :class:`Refusal`), a channel the broker closed on
a declaration (a :class:`DeclareRefusal`). What that means for the caller, and every
sentence a user reads about it, is decided here, once, for pika, aio-pika and the memory
broker alike. Also: which broker a URL names (and which virtual host:
:func:`broker_address`), the name a connection shows in the broker's tools, and the
timings both sides use.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import attrs

from ..errors import BrokerTLSError, BrokerUnavailable, EventError, TLSError, TLSFailure
from ..settings import Settings
from ..tls import describe

#: a publisher connection unused for this long is checked for what arrived meanwhile (the
#: broker's close, say) before a publish; one in steady use is not (the wait for the last
#: confirms ran its loop moments ago)
IDLE = 0.25

#: seconds a consumer waits for the confirm of a copy it moves to a delay or dead-letter queue
MOVE_TIMEOUT = 30.0

#: why a consumer session ended when the broker cancelled its consumer
CANCELLED = "the broker cancelled the consumer (queue deleted?)"

#: why a publish found its connection unusable before sending anything
CLOSED_WHILE_IDLE = "connection closed while idle"


class Lost(Exception):
    """The connection (or channel) is gone; whatever was in flight may be redelivered.

    Raised by the transports (pika, aio-pika, the memory broker) and handled inside
    svclink: a publisher reopens and sends once more, a consumer reconnects. It never
    reaches a caller, who sees :class:`~svclink.BrokerUnavailable` or a publish error.
    """


class Refusal(enum.Enum):
    """Why a broker that answered refused a connection: configuration, which retrying does not cure."""

    LOGIN = "the login (ACCESS_REFUSED): check the user and password in amqp_url"
    VHOST = "the virtual host (NOT_ALLOWED): check that it exists and that the user may use it"


class Refused(Exception):
    """A driver's report that a node refused the connection, with the core's :class:`Refusal`."""

    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


@attrs.frozen
class ConnectFailure:
    """How connecting to one node of ``amqp_url`` failed."""

    #: the node, without credentials
    where: str
    detail: str
    refusal: Refusal | None = None
    #: the TLS handshake was refused, and how (with the name the node's certificate was checked for)
    tls: TLSFailure | None = None
    hostname: str | None = None


def connect_error(failures: Sequence[ConnectFailure]) -> EventError:
    """The error when no node of ``amqp_url`` took a connection.

    A node that refused the login or the virtual host makes it an :class:`EventError`,
    raised at once by a publish and by a consumer's ``run()``: nodes of one cluster share
    their users, so the others are no cure. Otherwise it is :class:`BrokerUnavailable`,
    which a consumer waits out and a caller may retry. A refused TLS handshake makes it a
    :class:`BrokerTLSError` naming the node (a certificate problem, which waiting does not cure).
    """
    text = "; ".join(f"{f.where}: {f.detail}" for f in failures)
    tls = next((f for f in failures if f.tls is not None), None)
    if tls is not None and tls.tls is not None:
        others = [f"{f.where}: {f.detail}" for f in failures if f is not tls]
        also = f" (other nodes: {'; '.join(others)})" if others else ""
        return BrokerTLSError(
            f"broker node {tls.where}: {describe(tls.tls, tls.hostname)}{also}", failure=tls.tls
        )
    refused = [f.refusal for f in failures if f.refusal is not None]
    if refused:
        return EventError(f"the broker refused {refused[0].value} ({text})")
    return unreachable(text)


class DeclareRefusal(enum.Enum):
    """Why the broker closed a channel on a declaration: its AMQP reply code, as a driver reads it."""

    #: 403 ACCESS_REFUSED: the user may not declare or bind it
    ACCESS_REFUSED = 403
    #: 404 NOT_FOUND: something it refers to does not exist
    NOT_FOUND = 404
    #: 405 RESOURCE_LOCKED: another connection's exclusive queue (our own old one, not gone yet)
    LOCKED = 405
    #: 406 PRECONDITION_FAILED: it exists with other settings (type, durability, arguments)
    CONFLICT = 406
    #: any other code, or none
    OTHER = 0

    @classmethod
    def of(cls, reply_code: int | None) -> DeclareRefusal:
        """The refusal for an AMQP channel-close ``reply_code``."""
        try:
            return cls(reply_code)
        except ValueError:
            return cls.OTHER


def declare_failed(refusal: DeclareRefusal, detail: str) -> Exception:
    """What a consumer's refused declaration means: an :class:`~svclink.EventError` when only
    a change of settings or permissions helps, :class:`Lost` (reconnect with backoff) when
    waiting may (a queue still locked by the consumer's previous connection, say)."""
    if refusal in (DeclareRefusal.CONFLICT, DeclareRefusal.ACCESS_REFUSED):
        return EventError(f"cannot declare the consumer's queues: {detail}")
    return Lost(f"cannot declare the consumer's queues now: {detail}")


def exchange_failed(exchange: str, refusal: DeclareRefusal, detail: str) -> Exception:
    """What a publisher's refused exchange declaration means: an :class:`~svclink.EventError`
    for an exchange of another type or settings, else :class:`Lost`."""
    if refusal is DeclareRefusal.CONFLICT:
        return EventError(f"exchange {exchange!r} exists with other settings: {detail}")
    return Lost(detail or f"exchange {exchange!r} not declared in time")


def publish_refused(detail: str) -> EventError:
    """The broker refused a publish outright (not a nack: the publish itself was invalid)."""
    return EventError(f"the broker refused the publish: {detail}")


def move_failed(queue: str, detail: str) -> Lost:
    """A consumer could not copy a message to its delay or dead-letter queue: the message is
    nacked back to its queue and the session given up, so it is redelivered after a reconnect
    (which declares a deleted delay or dead queue again)."""
    return Lost(f"could not move the message to {queue}: {detail}")


def settle_failed(detail: str) -> Lost:
    """A consumer could not ack or move a message: the session is lost; the message comes back."""
    return Lost(f"could not settle a message ({detail}); it will be redelivered")


def unreachable(detail: str) -> BrokerUnavailable:
    """No node of ``amqp_url`` took a connection."""
    return BrokerUnavailable(f"cannot connect to the broker: {detail}")


def connect_exception(failures: Sequence[ConnectFailure]) -> Exception:
    """What a driver's connect raises when no node took the connection: :class:`Lost` for an
    outage (a consumer waits it out, a publisher reports it as unavailable), else the
    :func:`connect_error` itself, which retrying does not cure (a refused login or vhost, a
    refused TLS handshake)."""
    error = connect_error(failures)
    if isinstance(error, BrokerUnavailable) and not isinstance(error, TLSError):
        return Lost(str(error))
    return error


def is_memory(settings: Settings) -> bool:
    """Whether ``amqp_url`` names the in-process broker (``memory://``)."""
    return settings.amqp_url[0].startswith("memory:")


def default_name(settings: Settings, role: str) -> str:
    """The connection name the broker shows (``rabbitmqctl list_connections``, the management UI)."""
    return f"svclink:{settings.service_name or 'app'}:{role}"


@attrs.frozen
class BrokerAddress:
    """One node of ``amqp_url`` as both drivers read it."""

    #: the URL with its virtual host spelled the one way pika and aio-pika both read alike
    url: str = attrs.field(repr=False)
    #: the virtual host it names
    vhost: str
    #: the URL without credentials, for messages and logs
    safe: str


@functools.lru_cache(maxsize=64)
def broker_address(url: str) -> BrokerAddress:
    """The node ``url`` names, with its virtual host decided once for both drivers.

    The path after the host's ``/`` is the virtual host, percent-decoded; no path, or an
    empty one, means ``/``. So ``amqp://host//`` (the form Celery and kombu users write),
    ``amqp://host/%2F`` and ``amqp://host/`` all name vhost ``/``, as in kombu and aio-pika
    (pika alone read ``//`` as the empty vhost). The vhost travels quoted as one path
    segment, which pika and aio-pika decode to the same name.
    """
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) or "/"
    canonical = urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, ""))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    safe = f"{parts.scheme}://{host}:{port}/{quote(vhost, safe='')}"
    return BrokerAddress(url=canonical, vhost=vhost, safe=safe)
