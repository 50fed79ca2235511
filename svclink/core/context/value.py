"""The request context: its value, how it is bound, and the ids it carries.

The context (request id, caller, user, deadline, trace) lives in a contextvar, so it
follows a request through threads' own copies, asyncio tasks and ``contextvars.copy_context``
without being passed by hand. :func:`bind` binds one for a ``with`` block (and makes its
trace OpenTelemetry's current one); :func:`current` reads it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from random import getrandbits
from types import MappingProxyType
from typing import Any

import attrs

from . import trace
from .signing import Scalar, check_claims

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
    #: the subject of the client certificate the TLS layer verified (see :doc:`/tls`), if any
    tls_subject: str | None = None


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


CURRENT_CONTEXT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
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
    return CURRENT_CONTEXT.get()


@contextlib.contextmanager
def bind(context: RequestContext | None = None, **fields: Any) -> Iterator[RequestContext]:
    """Bind a context for the duration of a ``with`` block.

    With keyword fields only, the current context (or a new one) is copied with those
    fields changed; a missing ``request_id`` is generated. With OpenTelemetry installed
    and no span active, the context's trace becomes OpenTelemetry's current context too.
    """
    if context is None:
        base = CURRENT_CONTEXT.get()
        if base is None:
            fields.setdefault("request_id", new_request_id())
            context = RequestContext(**fields)
        else:
            context = attrs.evolve(base, **fields)
    elif fields:
        context = attrs.evolve(context, **fields)
    token = CURRENT_CONTEXT.set(context)
    otel_token = trace.attach(context.traceparent, context.tracestate)
    try:
        yield context
    finally:
        trace.detach(otel_token)
        CURRENT_CONTEXT.reset(token)
