"""The request context, the headers every outgoing call carries, and what an incoming one proves.

The context (request id, caller, user, deadline, trace) lives in a contextvar, so it
follows a request through threads' own copies, asyncio tasks and ``contextvars.copy_context``
without being passed by hand. Header names and values are validated here, once for both
drivers: a CR, LF or NUL never reaches the wire, and the error never echoes the value.

Incoming requests, events and tasks are read here too (:func:`incoming`), once for the
Django and ASGI middlewares, the Celery signals and the event consumers: the request id
and trace are taken if well formed, the deadline budget is clamped, and the caller and
user are believed only when their signed context verifies.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from random import getrandbits
from types import MappingProxyType
from typing import Any

import attrs

from .._version import __version__
from . import trace
from .errors import InvalidRequest
from .settings import Settings
from .signing import Claims, Scalar, SignatureError, check_claims, sign, verify

REQUEST_ID_HEADER = "X-Request-ID"
CALLER_HEADER = "X-Svclink-Caller"
CONTEXT_HEADER = "X-Svclink-Context"
DEADLINE_HEADER = "X-Svclink-Deadline-Ms"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
USER_AGENT = f"svclink/{__version__}"
#: the audience of the signed context on published events (not a service name: those have no ':')
EVENTS_AUDIENCE = "svclink:events"

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")
_VALUE_RE = re.compile(r"[\t\x20-\x7e]*")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._~:/+=@-]{1,200}$")
_DEADLINE_RE = re.compile(r"^[0-9]{1,12}$")
#: header names as :func:`read_incoming` looks them up (lower case)
_REQUEST_ID_LOWER = REQUEST_ID_HEADER.lower()
_CALLER_LOWER = CALLER_HEADER.lower()
_CONTEXT_LOWER = CONTEXT_HEADER.lower()
_DEADLINE_LOWER = DEADLINE_HEADER.lower()
#: the headers :func:`sign_headers` reads (lower case)
_SIGNING_INPUTS = (_CONTEXT_LOWER, _REQUEST_ID_LOWER)

log = logging.getLogger("svclink.context")


#: the claims of a context without any: one shared read-only empty mapping, made once
NO_CLAIMS: Mapping[str, Scalar] = MappingProxyType({})


def _claims(value: object) -> Mapping[str, Scalar]:
    """:func:`check_claims`, short-cut for the shared empty claims every event's context has."""
    return NO_CLAIMS if value is NO_CLAIMS else check_claims(value)


@attrs.frozen
class RequestContext:
    """What a request carries from service to service."""

    request_id: str
    #: the service that called us, only ever from a verified signed context
    caller_service: str | None = None
    user_id: str | None = None
    #: a few scalar facts about the user (roles, tenant...), signed along with ``user_id``
    user_claims: Mapping[str, Scalar] = attrs.field(default=NO_CLAIMS, converter=_claims, eq=False)
    #: absolute deadline on the monotonic clock of this process, if any
    deadline: float | None = None
    traceparent: str | None = None
    tracestate: str | None = None


@attrs.frozen
class Caller:
    """Who an incoming request, event or task says it comes from, and whether that was proved.

    ``service``, ``user_id`` and ``user_claims`` are only ever set when ``verified``;
    ``reason`` says why not otherwise (``"unsigned"``, ``"bad signature"``,
    ``"expired"``, ``"wrong audience"``, ``"malformed"``...).
    """

    verified: bool
    request_id: str
    service: str | None = None
    user_id: str | None = None
    user_claims: Mapping[str, Scalar] = attrs.field(default=NO_CLAIMS, converter=_claims, eq=False)
    reason: str | None = None
    #: the unsigned X-Svclink-Caller name, for log lines only: never for a decision
    claimed: str | None = None


@attrs.frozen
class Incoming:
    """The reading of an incoming request: the context to bind and the verdict on the caller."""

    context: RequestContext
    caller: Caller
    #: headers that were present but malformed, and so ignored
    dropped: tuple[str, ...] = ()
    #: strict mode and an unverified caller: answer 401 and do not run the handler
    rejected: bool = False


@attrs.frozen
class User:
    """The end user a request acts for: an id and a few claims, carried signed to other services."""

    id: str
    claims: Mapping[str, Scalar] = attrs.field(factory=dict, converter=check_claims, eq=False)


def as_user(value: object) -> User | None:
    """The :class:`User` a ``user_context`` callable means: None, a User, an id, or (id, claims)."""
    if value is None or isinstance(value, User):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return User(_user_id(value[0]), value[1])
    return User(_user_id(value))


def _user_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise TypeError("a user id must be a non-empty str or an int")
    text = str(value)
    if len(text) > 256:
        raise ValueError("a user id must be at most 256 characters")
    return text


def with_user(context: RequestContext, user: User | None) -> RequestContext:
    """``context`` acting for ``user``; with None, the user the verified caller vouched for stays."""
    if user is None:
        return context
    return attrs.evolve(context, user_id=user.id, user_claims=user.claims)


def rejection(result: Incoming) -> tuple[int, dict[str, str], bytes]:
    """The 401 answer to a request refused in strict mode: status, headers, JSON body.

    The body names the problem in the DRF/FastAPI ``detail`` shape but never says more
    than the reason (no token, no key).
    """
    reason = result.caller.reason or "unsigned"
    body = json.dumps(
        {"detail": f"caller context not verified: {reason}", "error_code": "svclink_unverified_caller"}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        REQUEST_ID_HEADER: result.context.request_id,
        "WWW-Authenticate": 'Svclink realm="services"',
    }
    return 401, headers, body


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "svclink_context", default=None
)


#: the bits of a 128-bit number that a version-4 UUID fixes, cleared and then set (as ``uuid.UUID`` does)
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (4 << 76) | (0x8000 << 48)


def uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hex digits, in the form ``uuid.uuid4().hex`` gives.

    Ids need to be unique, not secret, so the bits come from :func:`random.getrandbits`
    (as aiormq's message ids do) rather than ``os.urandom``: a system call per id
    costs more than the rest of making it, on every published event (its id and its
    request id). The generator is seeded from the OS, and again in a forked child
    (CPython reseeds it after ``os.fork()``), so parent and child never repeat each other.
    """
    return f"{getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return uuid4_hex()


def current() -> RequestContext | None:
    """The context bound in this thread or task, if any."""
    return _current.get()


@contextlib.contextmanager
def bind(context: RequestContext | None = None, **fields: Any) -> Iterator[RequestContext]:
    """Bind a context for the duration of a ``with`` block.

    With keyword fields only, the current context (or a new one) is copied with those
    fields changed; a missing ``request_id`` is generated. With OpenTelemetry installed
    and no span active, the context's trace becomes OpenTelemetry's current context too.
    """
    if context is None:
        base = _current.get()
        if base is None:
            fields.setdefault("request_id", new_request_id())
            context = RequestContext(**fields)
        else:
            context = attrs.evolve(base, **fields)
    elif fields:
        context = attrs.evolve(context, **fields)
    token = _current.set(context)
    otel_token = trace.attach(context.traceparent, context.tracestate)
    try:
        yield context
    finally:
        trace.detach(otel_token)
        _current.reset(token)


def check_header(name: object, value: object) -> tuple[str, str]:
    """A header as (name, value) strings, or :class:`InvalidRequest` without echoing either."""
    if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):  # fullmatch: '$' allows a final \n
        raise InvalidRequest("a header name is not a valid HTTP token (letters, digits, -!#$%&'*+.^_`|~)")
    if not isinstance(value, str):
        raise InvalidRequest(f"header {name!r} must have a str value, got {type(value).__name__}")
    if _BAD_VALUE_RE.search(value):
        raise InvalidRequest(f"header {name!r} value contains a CR, LF or NUL character")
    # Leading/trailing blanks are not part of a field value (RFC 9110 5.5); httpx refuses them,
    # requests refuses leading ones. Other control or non-ASCII characters are refused by httpx
    # or encoded differently by requests, so both sides refuse them here, the same way.
    value = value.strip(" \t")
    if not _VALUE_RE.fullmatch(value):
        raise InvalidRequest(
            f"header {name!r} value must be printable ASCII (no control or non-ASCII characters)"
        )
    return name, value


def _trace_headers(context: RequestContext | None) -> dict[str, str]:
    """The trace headers: OpenTelemetry's if it writes any, else the context's unchanged."""
    injected = trace.inject()
    if TRACEPARENT_HEADER in injected:
        return dict(check_header(k, v) for k, v in injected.items())
    headers = {}
    if context is not None:
        if context.traceparent:
            headers[TRACEPARENT_HEADER] = context.traceparent
        if context.tracestate:
            headers[TRACESTATE_HEADER] = context.tracestate
    return headers


def outgoing_headers(
    *,
    caller: str | None,
    context: RequestContext | None,
    extra: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> dict[str, str]:
    """The headers of an outgoing call: identity and context first, the caller's merged over.

    The caller's own headers may replace the defaults (names compare case-insensitively)
    but every one of them is validated.
    """
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",  # what both sides decode; the same on both
        REQUEST_ID_HEADER: context.request_id if context else new_request_id(),
    }
    if caller:
        headers[CALLER_HEADER] = caller
    headers.update(_trace_headers(context))
    if idempotency_key is not None:
        headers[IDEMPOTENCY_HEADER] = check_header(IDEMPOTENCY_HEADER, idempotency_key)[1]
    if extra:
        if not isinstance(extra, Mapping):
            raise InvalidRequest(f"headers must be a mapping, got {type(extra).__name__}")
        lower = {k.lower(): k for k in headers}
        for name, value in extra.items():
            name, value = check_header(name, value)
            headers.pop(lower.get(name.lower(), name), None)
            headers[name] = value
            lower[name.lower()] = name  # a later "x-a" replaces an earlier "X-A", never duplicates it
    return headers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` in ``headers``, whatever the case of the names."""
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def signed_context(
    settings: Settings, context: RequestContext, *, audience: str, wall: float, ttl: float
) -> str | None:
    """The signed caller context for ``audience``, or None when no signing key or service name is set."""
    if not settings.signing_key or not settings.service_name:
        return None
    claims = Claims(
        caller=settings.service_name,
        audience=audience,
        request_id=context.request_id,
        issued_at=math.floor(wall),
        expires_at=math.ceil(wall + ttl),
        user_id=context.user_id,
        user_claims=context.user_claims,
    )
    return sign(claims, settings.signing_key)


def sign_headers(
    headers: dict[str, str],
    settings: Settings,
    context: RequestContext | None,
    *,
    audience: str,
    wall: float,
    ttl: float,
) -> None:
    """Add the signed context to ``headers`` for the request id they carry (unless one is there)."""
    if header(headers, CONTEXT_HEADER) is not None:
        return
    request_id = header(headers, REQUEST_ID_HEADER) or new_request_id()
    if context is None:
        context = RequestContext(request_id=request_id)
    elif context.request_id != request_id:
        context = attrs.evolve(context, request_id=request_id)
    token = signed_context(settings, context, audience=audience, wall=wall, ttl=ttl)
    if token is not None:
        headers[CONTEXT_HEADER] = token


def message_headers(settings: Settings, *, audience: str, wall: float) -> dict[str, str]:
    """The context headers of a published event or task: request id, trace, caller, signed context.

    Outside any bound context a fresh request id is made, so every message has one.
    No deadline travels: a message may be handled long after the request that sent it.
    """
    context = current()
    request_id = context.request_id if context else new_request_id()
    headers = {REQUEST_ID_HEADER: request_id}
    if settings.service_name:
        headers[CALLER_HEADER] = settings.service_name
    traced = _trace_headers(context)
    headers.update(traced)
    ttl = settings.queued_context_ttl
    if not request_id or (traced and any(k.lower() in _SIGNING_INPUTS for k in traced)):  # the general way
        sign_headers(headers, settings, context, audience=audience, wall=wall, ttl=ttl)
    elif settings.signing_key and settings.service_name:  # else what sign_headers would find, known here
        signed = context if context is not None else RequestContext(request_id=request_id)
        token = signed_context(settings, signed, audience=audience, wall=wall, ttl=ttl)
        if token is not None:
            headers[CONTEXT_HEADER] = token
    return headers


def _deadline(value: str | None, settings: Settings, now: float) -> tuple[float | None, bool]:
    """(absolute deadline, well formed) from a budget in milliseconds, clamped to max_deadline."""
    if value is None:
        return None, True
    value = value.strip()
    if not _DEADLINE_RE.match(value):
        return None, False
    return now + min(int(value) / 1000.0, settings.max_deadline), True


def _verdict(
    headers: Mapping[str, str], request_id: str | None, settings: Settings, audience: str | None, wall: float
) -> Caller:
    """Who the caller is, believed only when the signed context verifies for ``audience``."""
    claimed = headers.get(_CALLER_LOWER)
    claimed = claimed[:64] if isinstance(claimed, str) else None
    token = headers.get(_CONTEXT_LOWER)
    rid = request_id or ""
    if not token:
        return Caller(False, rid, reason="unsigned", claimed=claimed)
    if not audience:
        return Caller(False, rid, reason="service_name not configured", claimed=claimed)
    keys = [k for k in (settings.signing_key, *settings.verification_keys) if k]
    try:
        claims = verify(token, keys=keys, audience=audience, now=wall)
    except SignatureError as exc:
        return Caller(False, rid, reason=exc.reason, claimed=claimed)
    if request_id is not None and claims.request_id != request_id:
        return Caller(False, rid, reason="request id mismatch", claimed=claimed)
    return Caller(
        True,
        claims.request_id,
        service=claims.caller,
        user_id=claims.user_id,
        user_claims=claims.user_claims,
        claimed=claimed,
    )


def incoming(
    headers: Mapping[str, Any],
    *,
    settings: Settings,
    now: float,
    wall: float,
    audience: str | None = None,
    strict: bool | None = None,
) -> Incoming:
    """Read an incoming request's (or message's) headers into a context and a caller verdict.

    ``now`` is the monotonic clock (for the deadline), ``wall`` the epoch clock (for the
    signature). ``audience`` defaults to our own service name; ``strict`` to
    ``settings.require_signed_context``. Nothing here raises on bad input: what is
    malformed is dropped and listed in ``dropped``.
    """
    lower = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
    return read_incoming(lower, settings=settings, now=now, wall=wall, audience=audience, strict=strict)


def read_incoming(
    lower: Mapping[str, str],
    *,
    settings: Settings,
    now: float,
    wall: float,
    audience: str | None = None,
    strict: bool | None = None,
) -> Incoming:
    """:func:`incoming` for headers already in lower case with str values only (as a consumer
    builds them for an event, merging the envelope's context with the message headers)."""
    dropped = []
    raw_id = lower.get(_REQUEST_ID_LOWER)
    if raw_id is not None and not _REQUEST_ID_RE.fullmatch(raw_id):  # fullmatch: no final \n
        raw_id = None
        dropped.append(REQUEST_ID_HEADER)
    caller = _verdict(lower, raw_id, settings, audience or settings.service_name, wall)
    request_id = raw_id or (caller.request_id if caller.verified else None) or new_request_id()
    if caller.request_id != request_id:
        caller = attrs.evolve(caller, request_id=request_id)
    deadline, ok = _deadline(lower.get(_DEADLINE_LOWER), settings, now)
    if not ok:
        dropped.append(DEADLINE_HEADER)
    traceparent = trace.valid_traceparent(lower.get(TRACEPARENT_HEADER))
    if traceparent is None and TRACEPARENT_HEADER in lower:
        dropped.append(TRACEPARENT_HEADER)
    tracestate = trace.valid_tracestate(lower.get(TRACESTATE_HEADER)) if traceparent else None
    context = RequestContext(
        request_id=request_id,
        caller_service=caller.service,
        user_id=caller.user_id,
        user_claims=caller.user_claims,
        deadline=deadline,
        traceparent=traceparent,
        tracestate=tracestate,
    )
    strict = settings.require_signed_context if strict is None else strict
    return Incoming(context, caller, tuple(dropped), rejected=strict and not caller.verified)


def log_incoming(result: Incoming, what: str = "request") -> None:
    """Log what was not trusted in an incoming request: once, at the level it deserves.

    A missing signed context is routine (DEBUG unless strict); a present but invalid one
    is a WARNING. Neither the token nor any key is ever logged. The records carry the
    request's id like any other record made while it is handled.
    """
    caller = result.caller
    if caller.verified and not result.dropped:
        return
    token = _current.set(result.context)
    try:
        if result.dropped:
            log.info(
                "ignored malformed %s header(s) on %s %s", ", ".join(result.dropped), what, caller.request_id
            )
        if caller.verified:
            return
        claimed = f" claiming to be {caller.claimed!r}" if caller.claimed else ""
        level = logging.WARNING if result.rejected or caller.reason != "unsigned" else logging.DEBUG
        action = "rejected" if result.rejected else "caller context not trusted"
        log.log(level, "%s %s %s%s: %s", what, caller.request_id, action, claimed, caller.reason)
    finally:
        _current.reset(token)
