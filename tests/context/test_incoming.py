"""Reading an incoming request: what is taken, what is clamped, and what is never trusted.

``svclink.context.incoming`` is the one function behind the Django and ASGI middlewares,
the Celery signals and the event consumers, so its rules are pinned down here with an
injected clock; the integration tests prove each caller uses it.
"""

from __future__ import annotations

import pytest

import svclink
from svclink.context import (
    CALLER_HEADER,
    CONTEXT_HEADER,
    DEADLINE_HEADER,
    REQUEST_ID_HEADER,
    Claims,
    bind,
    current,
    incoming,
    sign,
)

KEY = "shared-signing-key-0123456789"
OLD = "retired-signing-key-0123456789"
WALL = 1_800_000_000.0
MONO = 5_000.0
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def settings(**overrides: object) -> svclink.Settings:
    values: dict[str, object] = {"service_name": "user", "signing_key": KEY, "max_deadline": 30}
    values.update(overrides)
    return svclink.Settings(**values)  # type: ignore[arg-type]


def token(
    *, key: str = KEY, audience: str = "user", rid: str = "r-1", iat: float = WALL, ttl: int = 60
) -> str:
    claims = Claims("api", audience, rid, int(iat), int(iat) + ttl, "42", {"role": "admin"})
    return sign(claims, key)


def read(headers: dict[str, str], **overrides: object) -> svclink.context.Incoming:
    return incoming(headers, settings=settings(**overrides), now=MONO, wall=WALL)


def test_a_verified_caller_fills_the_context() -> None:
    result = read({"x-request-id": "r-1", "x-svclink-context": token(), "traceparent": TP})
    assert result.caller.verified and result.caller.reason is None
    assert (result.caller.service, result.caller.user_id) == ("api", "42")
    ctx = result.context
    assert (ctx.request_id, ctx.caller_service, ctx.user_id) == ("r-1", "api", "42")
    assert dict(ctx.user_claims) == {"role": "admin"}
    assert ctx.traceparent == TP
    assert not result.rejected and result.dropped == ()


def test_header_names_are_case_insensitive() -> None:
    result = read({REQUEST_ID_HEADER: "r-1", CONTEXT_HEADER: token(), "TraceParent": TP})
    assert result.caller.verified and result.context.traceparent == TP


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-request-id": "r-1"}, "unsigned"),
        ({"x-request-id": "r-1", "x-svclink-context": token(key="f" * 32)}, "bad signature"),
        ({"x-request-id": "r-1", "x-svclink-context": token(iat=WALL - 120)}, "expired"),
        ({"x-request-id": "r-1", "x-svclink-context": token(audience="billing")}, "wrong audience"),
        ({"x-request-id": "r-1", "x-svclink-context": "v1.garbage"}, "malformed"),
        ({"x-request-id": "r-2", "x-svclink-context": token()}, "request id mismatch"),
    ],
)
def test_an_unproved_caller_is_never_trusted(headers: dict[str, str], reason: str) -> None:
    headers = {**headers, CALLER_HEADER.lower(): "admin-service"}
    result = read(headers)
    assert not result.caller.verified
    assert result.caller.reason == reason
    assert result.caller.service is None and result.caller.user_id is None
    assert result.context.caller_service is None and result.context.user_id is None
    assert result.caller.claimed == "admin-service"  # kept for the log line only
    assert result.context.request_id == headers["x-request-id"]
    assert not result.rejected
    assert read(headers, require_signed_context=True).rejected


def test_strict_mode_lets_a_verified_caller_through() -> None:
    assert not read(
        {"x-request-id": "r-1", "x-svclink-context": token()}, require_signed_context=True
    ).rejected


def test_rotation_verification_keys_are_accepted() -> None:
    headers = {"x-request-id": "r-1", "x-svclink-context": token(key=OLD)}
    assert read(headers).caller.reason == "bad signature"
    assert read(headers, verification_keys=[OLD]).caller.verified


def test_no_signing_key_trusts_nothing() -> None:
    result = read({"x-request-id": "r-1", "x-svclink-context": token()}, signing_key=None)
    assert result.caller.reason == "no verification key configured"


def test_the_signed_request_id_fills_in_when_the_header_is_missing() -> None:
    result = read({"x-svclink-context": token(rid="from-token")})
    assert result.caller.verified and result.context.request_id == "from-token"


def test_request_id_is_taken_or_made() -> None:
    assert read({"x-request-id": "abc-123"}).context.request_id == "abc-123"
    made = read({}).context.request_id
    assert len(made) == 32 and made != read({}).context.request_id
    bad = read({"x-request-id": "a b<script>"})
    assert bad.context.request_id != "a b<script>" and bad.dropped == (REQUEST_ID_HEADER,)
    assert read({"x-request-id": "x" * 201}).dropped == (REQUEST_ID_HEADER,)


def test_deadline_budget_is_honoured_and_clamped() -> None:
    assert read({DEADLINE_HEADER: "1500"}).context.deadline == pytest.approx(MONO + 1.5)
    assert read({DEADLINE_HEADER: "900000"}).context.deadline == pytest.approx(MONO + 30)
    assert read({DEADLINE_HEADER: "0"}).context.deadline == pytest.approx(MONO)
    assert read({}).context.deadline is None
    for bad in ("-5", "1.5", "soon", "9" * 20):
        result = read({DEADLINE_HEADER: bad})
        assert result.context.deadline is None and result.dropped == (DEADLINE_HEADER,)


@pytest.mark.parametrize(
    "value",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ],
)
def test_a_malformed_traceparent_is_dropped(value: str) -> None:
    result = read({"traceparent": value, "tracestate": "a=b"})
    assert result.context.traceparent is None and result.context.tracestate is None
    assert result.dropped == ("traceparent",)


def test_tracestate_travels_with_a_valid_traceparent() -> None:
    assert read({"traceparent": TP, "tracestate": "vendor=x"}).context.tracestate == "vendor=x"
    assert read({"traceparent": TP, "tracestate": "x" * 600}).context.tracestate is None


def test_bind_and_current() -> None:
    assert current() is None
    with bind(request_id="outer", user_id="1") as outer:
        assert current() is outer
        with bind(user_id="2", user_claims={"r": "x"}) as inner:
            assert (inner.request_id, inner.user_id, dict(inner.user_claims)) == ("outer", "2", {"r": "x"})
        assert current() is outer
    assert current() is None
    with bind() as made:
        assert len(made.request_id) == 32
