"""The headers every outgoing call and event carries, checked and signed here once.

Header names and values are validated here, once for both drivers: a CR, LF or NUL never
reaches the wire, and the error never echoes the value. The caller and user travel in a
signed context (HMAC with issued-at, audience and expiry), so the receiving side can
believe them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..._version import __version__
from ..errors import InvalidRequest
from ..settings import Settings
from . import trace
from .signing import Claims, sign
from .value import RequestContext, current, new_request_id

REQUEST_ID_HEADER = "X-Request-ID"


#: Insanic's name for the request id (its REQUEST_ID_HEADER_FIELD), sent and read beside
#: X-Request-ID with the ``insanic_headers`` setting
INSANIC_REQUEST_ID_HEADER = "X-Insanic-Request-ID"


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


#: header names as :func:`read_incoming` looks them up (lower case)
REQUEST_ID_LOWER = REQUEST_ID_HEADER.lower()


INSANIC_REQUEST_ID_LOWER = INSANIC_REQUEST_ID_HEADER.lower()


CALLER_LOWER = CALLER_HEADER.lower()


CONTEXT_LOWER = CONTEXT_HEADER.lower()


DEADLINE_LOWER = DEADLINE_HEADER.lower()


#: the headers :func:`sign_headers` reads (lower case)
_SIGNING_INPUTS = (CONTEXT_LOWER, REQUEST_ID_LOWER)


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


def add_insanic_request_id(headers: dict[str, str]) -> None:
    """Copy the request id into Insanic's header, unless the caller set that one themselves."""
    if header(headers, INSANIC_REQUEST_ID_HEADER) is None:
        request_id = header(headers, REQUEST_ID_HEADER)
        if request_id is not None:
            headers[INSANIC_REQUEST_ID_HEADER] = request_id


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
    if not settings.signing_key or not settings.service_name or header(headers, CONTEXT_HEADER) is not None:
        return  # nothing to sign with (see signed_context), or the caller's own
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
