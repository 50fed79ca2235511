"""Outgoing calls carry the bound context: request id, trace, deadline budget, signed caller."""

from __future__ import annotations

import sys
import time

import pytest

import svclink
from svclink.context import bind, verify

from ..conftest import Side, use_server
from ..server import Reply, TestServer

KEY = "shared-signing-key-0123456789"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_bound_context_goes_out_signed(side: Side, server: TestServer) -> None:
    use_server(server, signing_key=KEY)
    server.route("GET", "/me", Reply(200, {}))
    with bind(request_id="req-42", user_id="7", user_claims={"role": "staff"}, traceparent=TP):
        side.call("user", "GET", "/me")
    (req,) = server.calls("GET", "/me")
    assert req.headers["x-request-id"] == "req-42"
    assert req.headers["traceparent"] == TP
    claims = verify(req.headers["x-svclink-context"], keys=[KEY], audience="user", now=time.time())
    assert (claims.caller, claims.request_id, claims.user_id) == ("api", "req-42", "7")
    assert dict(claims.user_claims) == {"role": "staff"}


def test_without_a_context_each_call_has_its_own_signed_request_id(side: Side, server: TestServer) -> None:
    use_server(server, signing_key=KEY)
    server.route("GET", "/me", Reply(200, {}))
    side.call("user", "GET", "/me")
    side.call("user", "GET", "/me")
    first, second = server.calls("GET", "/me")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    for req in (first, second):
        claims = verify(req.headers["x-svclink-context"], keys=[KEY], audience="user", now=time.time())
        assert claims.request_id == req.headers["x-request-id"] and claims.user_id is None
        assert "traceparent" not in req.headers


def test_a_request_id_given_as_a_header_is_the_one_signed(side: Side, server: TestServer) -> None:
    use_server(server, signing_key=KEY)
    server.route("GET", "/me", Reply(200, {}))
    with bind(request_id="bound"):
        side.call("user", "GET", "/me", headers={"x-request-id": "chosen"})
    (req,) = server.calls("GET", "/me")
    assert req.headers["x-request-id"] == "chosen"
    assert verify(
        req.headers["x-svclink-context"], keys=[KEY], audience="user", now=time.time()
    ).request_id == ("chosen")


def test_no_signing_key_no_signed_context(side: Side, server: TestServer) -> None:
    use_server(server)
    server.route("GET", "/me", Reply(200, {}))
    side.call("user", "GET", "/me")
    (req,) = server.calls("GET", "/me")
    assert "x-svclink-context" not in req.headers
    assert req.headers["x-svclink-caller"] == "api"  # informative only: never trusted


def test_the_remaining_budget_goes_out_with_every_attempt(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=4)
    server.route("GET", "/flaky", Reply(503), Reply(200, {}))
    side.call("user", "GET", "/flaky")
    budgets = [int(r.headers["x-svclink-deadline-ms"]) for r in server.calls("GET", "/flaky")]
    assert len(budgets) == 2
    assert 0 < budgets[1] < budgets[0] <= 4000


def test_a_bound_deadline_shortens_the_budget_sent(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=30)
    server.route("GET", "/me", Reply(200, {}))
    with bind(deadline=time.monotonic() + 2):
        side.call("user", "GET", "/me")
    (req,) = server.calls("GET", "/me")
    assert 0 < int(req.headers["x-svclink-deadline-ms"]) <= 2000


def test_an_expired_deadline_fails_before_any_io(side: Side, server: TestServer) -> None:
    use_server(server)
    server.route("GET", "/me", Reply(200, {}))
    with (
        bind(request_id="late", deadline=time.monotonic() - 0.1),
        pytest.raises(svclink.ServiceTimeout) as info,
    ):
        side.call("user", "GET", "/me")
    assert info.value.request_id == "late"
    assert server.calls("GET", "/me") == []


def test_a_bound_deadline_cuts_a_slow_call_short(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=10)
    server.route("GET", "/slow", Reply(200, {}, delay=3))
    started = time.monotonic()
    with bind(deadline=time.monotonic() + 0.5), pytest.raises(svclink.ServiceTimeout):
        side.call("user", "GET", "/slow")
    assert time.monotonic() - started < 2.5  # at the context's deadline, not the call's 10 s


def test_opentelemetry_active_span_is_the_parent_downstream(side: Side, server: TestServer) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    use_server(server)
    server.route("GET", "/me", Reply(200, {}))
    span = NonRecordingSpan(
        SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False, TraceFlags(1))
    )
    with bind(traceparent=TP), trace.use_span(span):
        side.call("user", "GET", "/me")
    (req,) = server.calls("GET", "/me")
    assert req.headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"


def test_opentelemetry_sees_the_bound_trace(server: TestServer) -> None:
    from opentelemetry import propagate

    use_server(server)
    with bind(traceparent=TP, tracestate="v=1"):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert carrier == {"traceparent": TP, "tracestate": "v=1"}
    carrier = {}
    propagate.inject(carrier)
    assert carrier == {}


def test_without_opentelemetry_the_trace_passes_through_unchanged(
    side: Side, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without it looks like
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    from svclink.core.context import trace

    monkeypatch.setattr(trace, "_modules", trace._NOT_LOOKED_UP)  # look again, under the block
    assert not trace.available()
    use_server(server)
    server.route("GET", "/me", Reply(200, {}))
    with bind(traceparent=TP, tracestate="v=1"):
        side.call("user", "GET", "/me")
    (req,) = server.calls("GET", "/me")
    assert (req.headers["traceparent"], req.headers["tracestate"]) == (TP, "v=1")
