"""What the sync and aio event drivers agree on about a broker, before any connection exists.

The one exception both transports raise when a connection is gone, which broker a URL
names (and which virtual host: :func:`broker_address`), and the name a connection shows
in the broker's tools.
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
    return BrokerUnavailable(f"cannot connect to the broker: {text}")


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
