"""The request context and the headers every outgoing call carries.

The context (request id, caller, user, deadline, trace) lives in a contextvar, so it
follows a request through threads' own copies, asyncio tasks and ``contextvars.copy_context``
without being passed by hand. Header names and values are validated here, once for both
drivers: a CR, LF or NUL never reaches the wire, and the error never echoes the value.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from .._version import __version__
from .errors import InvalidRequest

REQUEST_ID_HEADER = "X-Request-ID"
CALLER_HEADER = "X-Svclink-Caller"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
USER_AGENT = f"svclink/{__version__}"

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")


@attrs.frozen
class RequestContext:
    """What a request carries from service to service."""

    request_id: str
    caller_service: str | None = None
    user_id: str | None = None
    #: absolute deadline on the monotonic clock of this process, if any
    deadline: float | None = None
    traceparent: str | None = None
    tracestate: str | None = None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "svclink_context", default=None
)


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return uuid.uuid4().hex


def current() -> RequestContext | None:
    """The context bound in this thread or task, if any."""
    return _current.get()


@contextlib.contextmanager
def bind(context: RequestContext | None = None, **fields: Any) -> Iterator[RequestContext]:
    """Bind a context for the duration of a ``with`` block.

    With keyword fields only, the current context (or a new one) is copied with those
    fields changed; a missing ``request_id`` is generated.
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
    try:
        yield context
    finally:
        _current.reset(token)


def check_header(name: object, value: object) -> tuple[str, str]:
    """A header as (name, value) strings, or :class:`InvalidRequest` without echoing either."""
    if not isinstance(name, str) or not _TOKEN_RE.match(name):
        raise InvalidRequest("a header name is not a valid HTTP token (letters, digits, -!#$%&'*+.^_`|~)")
    if not isinstance(value, str):
        raise InvalidRequest(f"header {name!r} must have a str value, got {type(value).__name__}")
    if _BAD_VALUE_RE.search(value):
        raise InvalidRequest(f"header {name!r} value contains a CR, LF or NUL character")
    return name, value


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
        REQUEST_ID_HEADER: context.request_id if context else new_request_id(),
    }
    if caller:
        headers[CALLER_HEADER] = caller
    if context is not None:
        if context.traceparent:
            headers[TRACEPARENT_HEADER] = context.traceparent
        if context.tracestate:
            headers[TRACESTATE_HEADER] = context.tracestate
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
    return headers
