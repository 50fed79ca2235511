"""svclink.testing service stubs: in-process answers through the real core, on both sides."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import svclink
from svclink.core.context.value import bind
from svclink.testing.stubs import ServiceStub, StubReply, StubRequest

from ..conftest import Side

Stub = Callable[[str], ServiceStub]


def test_canned_answer_and_recorded_call(side: Side, svclink_stub: Stub) -> None:
    user = svclink_stub("user")  # not declared in settings: the fixture declares it
    user.on("GET", "/api/v1/users/{id}", json={"id": 5, "name": "ada"})
    with bind(request_id="req-stub-1"):
        body = side.call(
            "user", "GET", "/api/v1/users/{id}", path_params={"id": 5}, query_params={"x": [1, 2]}
        )
    assert body == {"id": 5, "name": "ada"}
    (call,) = user.calls
    assert (call.method, call.path, call.path_params) == ("GET", "/api/v1/users/5", {"id": "5"})
    assert call.query == {"x": ["1", "2"]}
    assert call.headers["x-request-id"] == "req-stub-1"


def test_answers_in_turn_go_through_real_retries(side: Side, svclink_stub: Stub) -> None:
    user = svclink_stub("user")
    user.on("GET", "/flaky", status=503).on("GET", "/flaky", json={"ok": True})
    assert side.call("user", "GET", "/flaky") == {"ok": True}
    assert len(user.requests_to("GET", "/flaky")) == 2


def test_error_mapping_and_transport_failures(side: Side, svclink_stub: Stub) -> None:
    user = svclink_stub("user")
    user.on("POST", "/api/v1/users/", status=409, json={"detail": "exists", "code": "duplicate"})
    user.on("GET", "/down", fail="connect")
    with pytest.raises(svclink.Conflict) as info:
        side.call("user", "POST", "/api/v1/users/", payload={"name": "ada"})
    assert (info.value.message, info.value.error_code) == ("exists", "duplicate")
    assert user.calls[0].json() == {"name": "ada"}
    with pytest.raises(svclink.ServiceUnavailable):
        side.call("user", "GET", "/down", retry_count=1)
    assert len(user.requests_to("GET", "/down")) == 2  # the real retry policy ran


def test_handler_and_unmatched_route(side: Side, svclink_stub: Stub) -> None:
    user = svclink_stub("user")

    def echo(request: StubRequest) -> StubReply:
        return StubReply(201, {"got": request.json(), "id": request.path_params["id"]})

    user.on("PUT", "/items/{id}", echo)
    assert side.call("user", "PUT", "/items/{id}", path_params={"id": "a b"}, payload=[1]) == {
        "got": [1],
        "id": "a b",
    }
    with pytest.raises(svclink.NotFound):
        side.call("user", "GET", "/elsewhere")


def test_bad_input_is_refused_before_the_stub(side: Side, svclink_stub: Stub) -> None:
    user = svclink_stub("user")
    with pytest.raises(svclink.InvalidRequest):
        side.call("user", "GET", "//evil.example/x")
    with pytest.raises(svclink.InvalidRequest):
        side.call("user", "GET", "/x", headers={"X-A": "1\r\nX-B: 2"})
    assert user.calls == []
    with pytest.raises(ValueError):
        user.on("GET", "/x", fail="meteor")


def test_stub_is_removed_after_the_block(side: Side) -> None:
    from svclink.testing.stubs import stub_service

    svclink.configure(service_connections=["user"], service_hosts={"user": "http://127.0.0.1:9"})
    with stub_service("user") as user:
        user.on("GET", "/x", json=1)
        assert side.call("user", "GET", "/x") == 1
    with pytest.raises(svclink.ServiceUnavailable):  # the real network again: nothing listens on :9
        side.call("user", "GET", "/x", retry_count=0)
