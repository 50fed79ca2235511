"""Retries: what is retried, how long it waits, and that no retry outlives the call's deadline."""

from __future__ import annotations

import time

import pytest

import svclink

from ..conftest import Side, use_server
from ..server import Reply, TestServer


def test_get_is_retried_after_a_503_then_succeeds(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/flaky", Reply(503), Reply(200, {"ok": True}))
    assert side.call("user", "GET", "/flaky") == {"ok": True}
    first, second = user_service.calls("GET", "/flaky")
    assert first.headers["x-request-id"] == second.headers["x-request-id"]  # one call, one id


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_up_to_the_count(
    side: Side, user_service: TestServer, status: int
) -> None:
    user_service.route("GET", "/down", Reply(status, {"detail": "down"}))
    with pytest.raises(svclink.ServerError) as info:
        side.call("user", "GET", "/down", retry_count=2)
    assert info.value.status_code == status
    assert len(user_service.calls("GET", "/down")) == 3


def test_500_is_not_retried(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/bug", Reply(500, {"detail": "bug"}))
    with pytest.raises(svclink.ServerError):
        side.call("user", "GET", "/bug")
    assert len(user_service.requests) == 1


def test_429_with_retry_after_is_retried_after_the_wait(side: Side, user_service: TestServer) -> None:
    user_service.route(
        "GET",
        "/limited",
        Reply(429, {"detail": "slow down"}, headers={"Retry-After": "1"}),
        Reply(200, {"ok": 1}),
    )
    assert side.call("user", "GET", "/limited") == {"ok": 1}
    first, second = user_service.calls("GET", "/limited")
    assert second.at - first.at >= 0.95


def test_429_without_retry_after_is_not_retried(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/limited", Reply(429, {"detail": "slow down"}))
    with pytest.raises(svclink.TooManyRequests):
        side.call("user", "GET", "/limited")
    assert len(user_service.requests) == 1


def test_post_is_not_retried_on_503_without_an_idempotency_key(side: Side, user_service: TestServer) -> None:
    user_service.route("POST", "/orders", Reply(503), Reply(201, {"id": 1}))
    with pytest.raises(svclink.ServerError) as info:
        side.call("user", "POST", "/orders", payload={"item": 1})
    assert info.value.status_code == 503
    assert len(user_service.requests) == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_and_patch_are_retried_with_an_idempotency_key(
    side: Side, user_service: TestServer, method: str
) -> None:
    user_service.route(method, "/orders", Reply(503), Reply(503), Reply(201, {"id": 1}))
    result = side.call("user", method, "/orders", payload={"item": 1}, idempotency_key="order-42")
    assert result == {"id": 1}
    attempts = user_service.calls(method, "/orders")
    assert len(attempts) == 3
    assert [a.headers["idempotency-key"] for a in attempts] == ["order-42"] * 3
    assert [a.json() for a in attempts] == [{"item": 1}] * 3


def test_a_retry_after_beyond_the_deadline_fails_at_once(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=5)
    server.route("GET", "/busy", Reply(503, {"detail": "busy"}, headers={"Retry-After": "30"}))
    started = time.monotonic()
    with pytest.raises(svclink.ServerError) as info:
        side.call("user", "GET", "/busy")
    took = time.monotonic() - started
    assert info.value.status_code == 503
    assert len(server.requests) == 1
    assert took < 2.5  # neither the 30 s asked for nor the 5 s deadline


def test_a_retry_after_over_the_policy_cap_fails_at_once(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=2, retry=svclink.RetryPolicy(max_retry_after=0.5))
    server.route("GET", "/busy", Reply(429, headers={"Retry-After": "1"}))
    with pytest.raises(svclink.TooManyRequests):
        side.call("user", "GET", "/busy")
    assert len(server.requests) == 1


def test_retries_and_waits_stay_inside_the_deadline(side: Side, server: TestServer) -> None:
    policy = svclink.RetryPolicy(total=50, backoff_factor=0.2, backoff_max=0.2, jitter=0.0)
    use_server(server, response_timeout=1, retry=policy, circuit_breaker=svclink.BreakerPolicy(enabled=False))
    server.route("GET", "/down", Reply(503))
    started = time.monotonic()
    with pytest.raises(svclink.ServerError):
        side.call("user", "GET", "/down")
    took = time.monotonic() - started
    assert 2 <= len(server.requests) <= 5  # one attempt per 0.2 s wait that fits in 1 s
    assert took < 2.0
