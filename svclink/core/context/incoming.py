"""What an incoming request, event or task proves about who sent it.

Read here once for the Django and ASGI middlewares, the Celery signals and the event
consumers: the request id and trace are taken if well formed, the deadline budget is
clamped, and the caller and user are believed only when their signed context verifies.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..logs import logger
from ..settings import Settings
from . import trace
from .outgoing import (
    CALLER_LOWER,
    CONTEXT_LOWER,
    DEADLINE_HEADER,
    DEADLINE_LOWER,
    INSANIC_REQUEST_ID_LOWER,
    REQUEST_ID_HEADER,
    REQUEST_ID_LOWER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
)
from .signing import SignatureError, verify
from .value import CURRENT_CONTEXT, Caller, RequestContext, new_request_id

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._~:/+=@-]{1,200}$")


_DEADLINE_RE = re.compile(r"^[0-9]{1,12}$")


log = logger("svclink.context")


@attrs.frozen
class Incoming:
    """The reading of an incoming request: the context to bind and the verdict on the caller."""

    context: RequestContext
    caller: Caller
    #: headers that were present but malformed, and so ignored
    dropped: tuple[str, ...] = ()
    #: strict mode and an unverified caller: answer 401 and do not run the handler
    rejected: bool = False


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
    claimed = headers.get(CALLER_LOWER)
    claimed = claimed[:64] if isinstance(claimed, str) else None
    token = headers.get(CONTEXT_LOWER)
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
    raw_id = lower.get(REQUEST_ID_LOWER)
    if raw_id is None and settings.insanic_headers:  # a call from an Insanic service
        raw_id = lower.get(INSANIC_REQUEST_ID_LOWER)
    if raw_id is not None and not _REQUEST_ID_RE.fullmatch(raw_id):  # fullmatch: no final \n
        raw_id = None
        dropped.append(REQUEST_ID_HEADER)
    caller = _verdict(lower, raw_id, settings, audience or settings.service_name, wall)
    request_id = raw_id or (caller.request_id if caller.verified else None) or new_request_id()
    if caller.request_id != request_id:
        caller = attrs.evolve(caller, request_id=request_id)
    deadline, ok = _deadline(lower.get(DEADLINE_LOWER), settings, now)
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
    token = CURRENT_CONTEXT.set(result.context)
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
        CURRENT_CONTEXT.reset(token)


def local_caller(settings: Settings, context: RequestContext | None) -> Caller:
    """The verdict for work this process started itself (a task run eagerly or by ``.run()``).

    Nothing crossed a process boundary, so nothing needs proving: the sender is this
    service, acting for the user of the context it already trusted when it bound it.
    """
    if context is None:
        return Caller(verified=True, request_id=new_request_id(), service=settings.service_name)
    return Caller(
        verified=True,
        request_id=context.request_id,
        service=settings.service_name,
        user_id=context.user_id,
        user_claims=context.user_claims,
    )
