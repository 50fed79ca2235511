"""One exception hierarchy for everything svclink raises, and the tables that pick a class.

The drivers never choose an exception class themselves: they report what happened (a
status code, a kind of transport failure) and these tables decide, so the sync and aio
sides raise exactly the same thing for the same fault.
"""

from __future__ import annotations

import enum
from typing import Any

from .redact import redact


class SvclinkError(Exception):
    """Base class of every exception svclink raises."""


class ConfigurationError(SvclinkError, ValueError):
    """A setting is missing or invalid; the message names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[ConfigurationError], tuple[str, str]]:
        return type(self), (self.field, self.problem)  # picklable (Celery results, multiprocessing)


class ServiceNotDeclared(SvclinkError, RuntimeError):
    """A service was asked for that is not in ``service_connections``."""

    def __init__(self, name: str, declared: tuple[str, ...]) -> None:
        listed = ", ".join(declared) if declared else "(none)"
        super().__init__(f"service {name!r} is not declared in service_connections; declared: {listed}")
        self.name = name
        self.declared = declared

    def __reduce__(self) -> tuple[type[ServiceNotDeclared], tuple[str, tuple[str, ...]]]:
        return type(self), (self.name, self.declared)


class InvalidRequest(SvclinkError, ValueError):
    """A call's arguments are unusable; raised before any I/O.

    The message says what is wrong without echoing the offending value, which may
    carry an injection attempt or a secret.
    """


class APIException(SvclinkError):
    """A call to another service did not succeed.

    Every instance says which call failed (``service``, ``method``, ``endpoint``) and
    what the other side said (``status_code``, ``error_code``, ``message``,
    ``description``), with the ``request_id`` that ties it to the logs of both sides.
    """

    def __init__(
        self,
        message: str,
        *,
        service: str = "",
        method: str = "",
        endpoint: str = "",
        status_code: int | None = None,
        error_code: str | None = None,
        description: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.service = service
        self.method = method
        self.endpoint = endpoint
        self.status_code = status_code
        self.error_code = error_code
        self.description = description
        self.request_id = request_id
        #: the decoded error body (bounded), for callers that need more than the fields
        self.body = body

    def __str__(self) -> str:
        where = f"{self.service}: {self.method} {self.endpoint}"
        status = f" -> {self.status_code}" if self.status_code is not None else ""
        code = f" [{self.error_code}]" if self.error_code else ""
        return redact(f"{where}{status}: {self.message}{code}")  # an error body may echo a credential

    def __repr__(self) -> str:
        # BaseException's repr shows args unredacted; this one shows what str() does
        return f"{type(self).__name__}({str(self)!r})"


class ClientError(APIException):
    """The other service answered with a 4xx status."""


class BadRequest(ClientError):
    """400."""


class Unauthorized(ClientError):
    """401."""


class Forbidden(ClientError):
    """403."""


class NotFound(ClientError):
    """404."""


class Conflict(ClientError):
    """409."""


class UnprocessableEntity(ClientError):
    """422."""


class TooManyRequests(ClientError):
    """429."""


class ServerError(APIException):
    """The other service answered with a 5xx status."""


class ServiceUnavailable(APIException):
    """No response at all: connection refused or reset, name not resolved."""


class CircuitOpen(ServiceUnavailable):
    """The service failed too often lately; the call was refused without being sent."""


class TLSError(SvclinkError):
    """A TLS handshake failed; ``failure`` says how. Raised as :class:`ServiceTLSError` for a
    call and :class:`BrokerTLSError` for the broker; never retried (trying again cannot help)."""

    failure: TLSFailure


class ServiceTLSError(ServiceUnavailable, TLSError):
    """A service's TLS handshake failed: untrusted or expired certificate, wrong host name,
    client certificate missing or refused. Not retried, and not counted by the circuit breaker."""

    def __init__(self, message: str, *, failure: TLSFailure, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.failure = failure


class ServiceTimeout(APIException):
    """No response before the call's deadline."""


class ResponseDecodeError(APIException):
    """The response body is not the JSON the caller asked for."""


class ResponseTooLarge(APIException):
    """The response body is larger than ``max_response_size``; at most that many bytes were read.

    ``status_code`` is the response's status; ``size`` the Content-Length it announced,
    or None when it announced none and the body ran past the limit.
    """

    #: the announced Content-Length, if any
    size: int | None = None
    #: the bound that was exceeded, in bytes
    limit: int = 0


class RedirectNotFollowed(APIException):
    """A redirect svclink does not follow: to another origin, more than five in a row, or a
    301/302/303 answering a method other than GET or HEAD (it would turn the call into a GET
    and drop its body). The message names the ``Location`` when it is on the same origin."""


class EventError(SvclinkError):
    """Base class of the errors of publishing and consuming events."""


class InvalidEvent(EventError, ValueError):
    """An event type, routing key, payload or envelope is unusable; raised before any I/O."""


class BrokerUnavailable(EventError):
    """The message broker cannot be reached."""


class BrokerTLSError(BrokerUnavailable, TLSError):
    """The TLS handshake with a broker node failed (see :class:`TLSError`); not retried."""

    def __init__(self, message: str, *, failure: TLSFailure) -> None:
        super().__init__(message)
        self.failure = failure

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_broker_tls, (str(self), self.failure.value)


def _rebuild_broker_tls(message: str, failure: str) -> BrokerTLSError:
    return BrokerTLSError(message, failure=TLSFailure(failure))


class PublishError(EventError):
    """A message was not accepted by the broker; it may be published again."""

    #: set when raised by ``publish_many``: the events the broker confirmed...
    published: tuple[Any, ...] = ()
    #: ...and ``(event, error)`` for each one it did not, in order
    failed: tuple[tuple[Any, PublishError], ...] = ()


class UnroutableError(PublishError):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class PublishNacked(PublishError):
    """The broker refused the message (basic.nack)."""


class PublishTimeout(PublishError):
    """No confirm arrived before the publish timeout; the message may or may not have landed."""


class HandlerTimeout(EventError):
    """A handler ran longer than its consumer's ``handler_timeout``: the message counts as failed
    (retried, then dead-lettered), and is acked before the broker's ``consumer_timeout``."""


STATUS_CLASSES: dict[int, type[APIException]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: UnprocessableEntity,
    429: TooManyRequests,
}


def class_for_status(status: int) -> type[APIException]:
    """The exception class for an error status (>= 400)."""
    if status in STATUS_CLASSES:
        return STATUS_CLASSES[status]
    return ClientError if status < 500 else ServerError


class TransportFailure(enum.Enum):
    """What went wrong when no usable response arrived; drivers report one of these."""

    #: the connection could not be made: nothing was sent, so any method may be retried
    CONNECT = "connect"
    #: writing the request failed, so it was never whole on the server: any method may be retried
    NOT_SENT = "not_sent"
    #: the connection broke after the request may have been sent
    RESET = "reset"
    #: a read or write timed out
    TIMEOUT = "timeout"
    #: every pooled connection stayed busy until the deadline: a local limit, nothing was
    #: sent, and no sign of the service's health (the circuit breaker does not count it)
    POOL = "pool"


class TLSFailure(enum.Enum):
    """What a failed TLS handshake was; the drivers report one (see :func:`svclink.core.tls.classify`)."""

    #: the peer's certificate is not signed by a CA we trust
    UNTRUSTED = "untrusted"
    #: the peer's certificate has expired (or is not valid yet)
    EXPIRED = "expired"
    #: the peer's certificate is not valid for the name we checked
    HOSTNAME = "hostname"
    #: the peer requires a client certificate and we sent none
    CLIENT_CERT_MISSING = "client_cert_missing"
    #: the peer refused our client certificate
    CLIENT_CERT_REFUSED = "client_cert_refused"
    #: anything else (no common protocol version or cipher, a broken handshake)
    HANDSHAKE = "handshake"


TRANSPORT_CLASSES: dict[TransportFailure, type[APIException]] = {
    TransportFailure.CONNECT: ServiceUnavailable,
    TransportFailure.NOT_SENT: ServiceUnavailable,
    TransportFailure.RESET: ServiceUnavailable,
    TransportFailure.TIMEOUT: ServiceTimeout,
    TransportFailure.POOL: ServiceTimeout,
}
