"""The call flow driven by hand, like h11's tests: fake times and randomness, no sockets.

Each test plays the driver: it asks the call for a request, "performs" it by inventing
what came back, and checks the call's answer (retry after a wait, done, or an exception).
"""

from __future__ import annotations

import email.utils
import json
from typing import Any

import pytest

import svclink
from svclink.core.context.value import bind
from svclink.core.errors import TransportFailure
from svclink.core.http.calls import Call, Done, Retry
from svclink.core.http.responses import Response
from svclink.core.http.service import BaseService
from svclink.core.settings import Settings

BASE = "http://user.internal:8001"
T0 = 1000.0  # the fake monotonic clock
WALL = 1_700_000_000.0  # the fake epoch clock
JSON = {"content-type": "application/json"}


def start(method: str = "GET", endpoint: str = "/users/{id}", **kwargs: Any) -> Call:
    settings = Settings(
        service_name="api",
        service_connections=["user"],
        service_hosts={"user": BASE},
        response_timeout=10,
        connect_timeout=3,
        retry=svclink.RetryPolicy(total=2, backoff_factor=0.1, jitter=0.5),
    )
    if "{id}" in endpoint:
        kwargs.setdefault("path_params", {"id": 5})
    plan = BaseService("user", settings).plan(method, endpoint, **kwargs)
    return Call.start(plan, T0)


def reply(
    call: Call, status: int, body: Any = None, headers: dict[str, str] | None = None, *,
    now: float = T0, rand: float = 0.0, reason: str = "",
) -> Retry | Done:  # fmt: skip
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    hdrs = dict(JSON if body is not None and not isinstance(body, bytes) else {}, **(headers or {}))
    return call.received(status, reason, hdrs, raw, now=now, wall=WALL, rand=rand)


def test_a_request_carries_the_plan() -> None:
    call = start("get", query_params={"q": "x"})
    req = call.request(T0)
    assert (req.method, req.url) == ("GET", BASE + "/users/5?q=x")
    assert req.headers["X-Svclink-Caller"] == "api"
    assert req.content is None and req.form is None and req.files is None
    assert (req.timeout, req.connect_timeout) == (10.0, 3.0)
    assert call.attempts == 1


def test_each_attempt_gets_what_is_left_of_the_budget() -> None:
    call = start()
    call.request(T0)
    call.failed(TransportFailure.CONNECT, "refused", T0 + 8.5, rand=0.0)
    req = call.request(T0 + 8.6)
    assert req.timeout == pytest.approx(1.4)
    assert req.connect_timeout == pytest.approx(1.4)


def test_200_json_is_done() -> None:
    call = start()
    call.request(T0)
    assert reply(call, 200, {"id": 5}) == Done({"id": 5})


def test_include_status_code_and_204() -> None:
    call = start("DELETE", include_status_code=True)
    call.request(T0)
    assert reply(call, 204) == Done((None, 204))


def test_raw_response() -> None:
    call = start(raw_response=True)
    call.request(T0)
    step = reply(call, 500, b"oops", {"content-type": "text/plain"})
    assert isinstance(step, Done)
    assert step.value == Response(500, {"content-type": "text/plain"}, b"oops", BASE + "/users/5")


def test_a_non_json_body_raises_with_status_and_a_bounded_excerpt() -> None:
    call = start()
    call.request(T0)
    with pytest.raises(svclink.ResponseDecodeError) as info:
        reply(call, 200, b"<html>" + b"x" * 100_000, {"content-type": "text/html"})
    err = info.value
    assert err.status_code == 200
    assert "text/html" in err.message
    assert isinstance(err.body, str) and err.body.startswith("<html>") and len(err.body) <= 501


def test_invalid_json_with_a_json_type_raises() -> None:
    call = start()
    call.request(T0)
    with pytest.raises(svclink.ResponseDecodeError, match="invalid JSON"):
        reply(call, 200, b"{not json", JSON)


def test_503_is_retried_after_the_backoff_then_succeeds() -> None:
    call = start()
    call.request(T0)
    assert reply(call, 503, rand=0.5) == Retry(pytest.approx(0.1 * 0.75))
    call.request(T0 + 0.1)
    assert reply(call, 503, now=T0 + 0.2) == Retry(pytest.approx(0.2))
    call.request(T0 + 0.4)
    assert reply(call, 200, {"ok": True}, now=T0 + 0.5) == Done({"ok": True})
    assert (call.attempts, call.retries) == (3, 2)


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    call = start()
    for n in range(2):
        call.request(T0 + n)
        assert isinstance(reply(call, 503, {"detail": "busy"}, now=T0 + n), Retry)
    call.request(T0 + 2)
    with pytest.raises(svclink.ServerError) as info:
        reply(call, 503, {"detail": "busy"}, now=T0 + 2)
    assert info.value.status_code == 503
    assert info.value.message == "busy"


def test_retry_count_zero_never_retries() -> None:
    call = start(retry_count=0)
    call.request(T0)
    with pytest.raises(svclink.ServerError):
        reply(call, 503)


def test_post_is_not_retried_without_an_idempotency_key() -> None:
    call = start("POST", "/orders", payload={"a": 1})
    call.request(T0)
    with pytest.raises(svclink.ServerError):
        reply(call, 503)
    assert call.attempts == 1


def test_post_with_an_idempotency_key_is_retried_with_the_same_key() -> None:
    call = start("POST", "/orders", payload={"a": 1}, idempotency_key="order-1")
    first = call.request(T0)
    assert isinstance(reply(call, 503), Retry)
    second = call.request(T0 + 1)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "order-1"
    assert first.content == second.content == b'{"a":1}'


def test_429_with_retry_after_waits_as_asked() -> None:
    call = start()
    call.request(T0)
    assert reply(call, 429, headers={"retry-after": "3"}) == Retry(3.0)


def test_429_with_an_http_date_retry_after() -> None:
    call = start()
    call.request(T0)
    when = email.utils.formatdate(WALL + 2, usegmt=True)
    assert reply(call, 429, headers={"retry-after": when}) == Retry(pytest.approx(2.0))


def test_429_without_retry_after_is_not_retried() -> None:
    call = start()
    call.request(T0)
    with pytest.raises(svclink.TooManyRequests):
        reply(call, 429)


def test_a_retry_after_beyond_the_deadline_fails_at_once() -> None:
    call = start()
    call.request(T0)
    with pytest.raises(svclink.ServerError) as info:
        reply(call, 503, headers={"retry-after": "20"}, now=T0 + 1)
    assert info.value.status_code == 503
    assert call.attempts == 1


def test_connect_failures_are_retried_for_any_method() -> None:
    call = start("POST", "/orders", payload={})
    call.request(T0)
    assert isinstance(call.failed(TransportFailure.CONNECT, "refused", T0, 0.0), Retry)


def test_connect_failures_exhausted_raise_service_unavailable() -> None:
    call = start()
    for n in range(2):
        call.request(T0 + n)
        call.failed(TransportFailure.CONNECT, "ConnectionRefusedError", T0 + n, 0.0)
    call.request(T0 + 2)
    with pytest.raises(svclink.ServiceUnavailable) as info:
        call.failed(TransportFailure.CONNECT, "ConnectionRefusedError", T0 + 2, 0.0)
    assert "3 attempts" in info.value.message
    assert info.value.status_code is None


def test_a_reset_is_retried_for_get_but_not_for_post() -> None:
    get = start()
    get.request(T0)
    assert isinstance(get.failed(TransportFailure.RESET, "reset", T0, 0.0), Retry)
    post = start("POST", "/orders", payload={})
    post.request(T0)
    with pytest.raises(svclink.ServiceUnavailable, match="connection broken"):
        post.failed(TransportFailure.RESET, "reset", T0, 0.0)


def test_a_timeout_raises_service_timeout() -> None:
    call = start()
    call.request(T0)
    with pytest.raises(svclink.ServiceTimeout) as info:
        call.failed(TransportFailure.TIMEOUT, "ReadTimeout", T0 + 10, 0.0)
    assert not isinstance(info.value, svclink.ServiceUnavailable)


def test_no_attempt_starts_after_the_deadline() -> None:
    call = start(response_timeout=1)
    call.request(T0)
    assert isinstance(reply(call, 503, now=T0 + 0.5), Retry)
    with pytest.raises(svclink.ServiceTimeout, match="deadline"):
        call.request(T0 + 1.0)


def test_a_bound_context_deadline_shortens_the_call() -> None:
    with bind(request_id="r", deadline=T0 + 2):
        call = start()
    assert call.request(T0).timeout == 2.0


def test_same_origin_redirects_are_followed() -> None:
    call = start()
    call.request(T0)
    assert reply(call, 301, headers={"location": "/v2/users/5?x=1"}) == Retry(0.0)
    assert call.request(T0).url == BASE + "/v2/users/5?x=1"
    assert reply(call, 307, headers={"location": BASE + "/v3/users/5"}) == Retry(0.0)
    assert call.request(T0).url == BASE + "/v3/users/5"
    assert call.retries == 0


@pytest.mark.parametrize("status", [301, 302, 303])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_a_301_302_303_after_a_method_other_than_get_or_head_is_refused(method: str, status: int) -> None:
    """Following would turn the call into a GET without its body: a POST silently not done."""
    call = start(method, "/orders", payload={"a": 1})
    call.request(T0)
    with pytest.raises(svclink.RedirectNotFollowed) as info:
        reply(call, status, headers={"location": "/orders/"})
    assert info.value.status_code == status and info.value.method == method
    assert BASE + "/orders/" in str(info.value)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_get_or_head_follows_every_redirect_unchanged(method: str, status: int) -> None:
    call = start(method)
    call.request(T0)
    assert reply(call, status, headers={"location": "/v2/users/5"}) == Retry(0.0)
    assert (call.request(T0).method, call.request(T0).url) == (method, BASE + "/v2/users/5")


def test_a_307_keeps_the_method_and_body() -> None:
    call = start("POST", "/orders", payload={"a": 1})
    call.request(T0)
    reply(call, 307, headers={"location": "/orders-v2"})
    req = call.request(T0)
    assert (req.method, req.content) == ("POST", b'{"a":1}')


@pytest.mark.parametrize(
    "location",
    ["http://evil.example/x", "//evil.example/x", "https://user.internal:8001/x", "http://user.internal:8002/x",
     "http://user.internal:8001@evil.example/"],
)  # fmt: skip
def test_redirects_to_another_origin_are_refused(location: str) -> None:
    call = start()
    call.request(T0)
    with pytest.raises(svclink.RedirectNotFollowed) as info:
        reply(call, 302, headers={"location": location})
    assert info.value.status_code == 302
    assert "evil" not in str(info.value)


def test_redirect_loops_end() -> None:
    call = start()
    with pytest.raises(svclink.RedirectNotFollowed, match="redirects"):
        for _ in range(10):
            call.request(T0)
            reply(call, 302, headers={"location": "/again"})
    assert call.redirects == 5


def test_a_redirect_without_location_is_the_result() -> None:
    call = start()
    call.request(T0)
    assert reply(call, 304) == Done(None)


def test_errors_carry_the_call_and_the_request_id() -> None:
    with bind(request_id="req-42"):
        call = start()
    call.request(T0)
    body = {"message": "nope", "description": "no user 5", "error_code": {"name": "NO_USER", "value": 1}}
    with pytest.raises(svclink.NotFound) as info:
        reply(call, 404, body)
    err = info.value
    assert (err.service, err.method, err.endpoint) == ("user", "GET", "/users/{id}")
    assert (err.status_code, err.error_code, err.message, err.description) == (
        404,
        "NO_USER",
        "nope",
        "no user 5",
    )
    assert err.request_id == "req-42"


def test_the_request_id_of_an_error_follows_a_caller_supplied_header() -> None:
    call = start(headers={"x-request-id": "mine"})
    call.request(T0)
    with pytest.raises(svclink.BadRequest) as info:
        reply(call, 400, {"detail": "bad"})
    assert info.value.request_id == "mine"


def test_propagate_error_false_returns_the_error_body() -> None:
    call = start(propagate_error=False, include_status_code=True)
    call.request(T0)
    assert reply(call, 404, {"detail": "Not found."}) == Done(({"detail": "Not found."}, 404))
    call = start(propagate_error=False)
    call.request(T0)
    assert reply(call, 500, b"boom", {"content-type": "text/plain"}) == Done("boom")


def test_propagate_error_false_still_raises_when_nothing_came_back() -> None:
    call = start(propagate_error=False, retry_count=0)
    call.request(T0)
    with pytest.raises(svclink.ServiceUnavailable):
        call.failed(TransportFailure.CONNECT, "refused", T0, 0.0)
