"""Error responses become exceptions (or bodies), and bad input never reaches the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest

import svclink
from svclink.core.context.value import bind

from ..conftest import Side, use_server
from ..server import Reply, TestServer

INSANIC = {
    "message": "User not found.",
    "description": "There is no user with id 5.",
    "error_code": {"name": "USER_NOT_FOUND", "value": 40401},
    "status_code": 404,
}
DRF_DETAIL = {"detail": "You do not have permission to perform this action."}
DRF_FIELDS = {"email": ["Enter a valid email address."], "name": ["This field is required."]}
FASTAPI = {
    "detail": [{"loc": ["body", "age"], "msg": "value is not a valid integer", "type": "type_error.integer"}]
}

# (status, class, reply, expected message, expected error_code)
CASES: list[tuple[int, type[svclink.APIException], Reply, str, str | None]] = [
    (400, svclink.BadRequest, Reply(400, DRF_FIELDS),
     "email: Enter a valid email address.; name: This field is required.", None),
    (401, svclink.Unauthorized, Reply(401, {"detail": "Invalid token.", "code": "token_not_valid"}),
     "Invalid token.", "token_not_valid"),
    (403, svclink.Forbidden, Reply(403, DRF_DETAIL), DRF_DETAIL["detail"], None),
    (404, svclink.NotFound, Reply(404, INSANIC), "User not found.", "USER_NOT_FOUND"),
    (409, svclink.Conflict, Reply(409, body=b"version conflict\nreload and retry"), "version conflict", None),
    (422, svclink.UnprocessableEntity, Reply(422, FASTAPI), "body.age: value is not a valid integer",
     "type_error.integer"),
    (429, svclink.TooManyRequests, Reply(429, {"detail": "Request was throttled."}),
     "Request was throttled.", None),
    (418, svclink.ClientError, Reply(418, body=b"I'm a teapot"), "I'm a teapot", None),
    (500, svclink.ServerError, Reply(500, body=b""), "Internal Server Error", None),
    (501, svclink.ServerError, Reply(501, {"message": "not yet", "error_code": {"name": "TODO", "value": 1}}),
     "not yet", "TODO"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "cls", "reply", "message", "code"), CASES, ids=[str(c[0]) for c in CASES])
def test_error_statuses_map_to_classes_with_every_field(
    side: Side,
    user_service: TestServer,
    status: int,
    cls: type[svclink.APIException],
    reply: Reply,
    message: str,
    code: str | None,
) -> None:
    user_service.route("POST", "/api/v1/users/5", reply)
    with bind(request_id="req-err"), pytest.raises(cls) as info:
        side.call("user", "POST", "/api/v1/users/{id}", path_params={"id": 5}, payload={})
    err = info.value
    assert type(err) is cls
    assert (err.service, err.method, err.endpoint) == ("user", "POST", "/api/v1/users/{id}")
    assert (err.status_code, err.message, err.error_code) == (status, message, code)
    assert err.request_id == "req-err"
    assert str(err).startswith(f"user: POST /api/v1/users/{{id}} -> {status}: {message}")
    assert len(user_service.requests) == 1


def test_insanic_description(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/u", Reply(404, INSANIC))
    with pytest.raises(svclink.NotFound) as info:
        side.call("user", "GET", "/u")
    assert info.value.description == "There is no user with id 5."
    assert info.value.body == INSANIC


def test_plain_text_description(side: Side, user_service: TestServer) -> None:
    user_service.route(
        "GET", "/u", Reply(500, body=b"Traceback (most recent call last):\n  File x\nKeyError")
    )
    with pytest.raises(svclink.ServerError) as info:
        side.call("user", "GET", "/u", retry_count=0)
    assert info.value.message == "Traceback (most recent call last):"
    assert info.value.description is not None and "KeyError" in info.value.description


@pytest.mark.parametrize(
    "reply",
    [
        Reply(
            500, body=b"<html>\n" + b"<p>stack frame</p>\n" * 600_000, headers={"Content-Type": "text/html"}
        ),
        Reply(400, {"detail": "x" * 10_000_000}),
        Reply(400, {"email": ["y" * 10_000_000]}),
    ],
    ids=["html-page", "json-detail", "json-fields"],
)
def test_a_10mb_error_body_gives_bounded_exception_text(
    side: Side, user_service: TestServer, reply: Reply
) -> None:
    user_service.route("GET", "/big", reply)
    with pytest.raises(svclink.APIException) as info:
        side.call("user", "GET", "/big", retry_count=0)
    err = info.value
    assert err.status_code == reply.status
    assert len(err.message) <= 501
    assert err.description is None or len(err.description) <= 501
    assert len(json.dumps(err.body)) <= 4000
    assert len(str(err)) <= 1000


def test_propagate_error_false_returns_the_decoded_error_body(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/u", Reply(404, INSANIC))
    user_service.route("GET", "/t", Reply(409, body=b"conflict"))
    assert side.call("user", "GET", "/u", propagate_error=False) == INSANIC
    assert side.call("user", "GET", "/u", propagate_error=False, include_status_code=True) == (INSANIC, 404)
    assert side.call("user", "GET", "/t", propagate_error=False) == "conflict"


def test_settings_propagate_error_false(side: Side, server: TestServer) -> None:
    use_server(server, propagate_error=False)
    server.route("GET", "/u", Reply(403, DRF_DETAIL))
    assert side.call("user", "GET", "/u", include_status_code=True) == (DRF_DETAIL, 403)
    with pytest.raises(svclink.Forbidden):
        side.call("user", "GET", "/u", propagate_error=True)


def test_5xx_with_propagate_error_false_is_still_retried_first(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/u", Reply(503, {"detail": "busy"}))
    assert side.call("user", "GET", "/u", propagate_error=False, retry_count=1) == {"detail": "busy"}
    assert len(user_service.requests) == 2


HEADER_INJECTIONS: list[dict[str, Any]] = [
    {"X-A": "1\r\nX-Injected: evil"},
    {"X-A": "1\nX-Injected: evil"},
    {"X-A": "1\rX-Injected: evil"},
    {"X-A": "1\x00X-Injected: evil"},
    {"X-A\r\nX-Injected": "evil"},
    {"X-A\n": "evil-Injected"},
    {"X-A\x00X-Injected": "evil"},
    {"X-A: 1\r\nX-Injected": "evil"},
    {"X-A": "é-Injected"},
]


@pytest.mark.parametrize("headers", HEADER_INJECTIONS)
def test_header_injection_is_refused_before_any_io(
    side: Side, user_service: TestServer, headers: Any
) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        side.call("user", "GET", "/x", headers=headers)
    assert isinstance(info.value, ValueError)
    assert "Injected" not in str(info.value) and "evil" not in str(info.value)
    assert user_service.requests == []


@pytest.mark.parametrize(
    ("endpoint", "path_params"),
    [
        ("//evil.example/x", None),
        ("http://evil.example/", None),
        ("\\\\evil.example\\x", None),
        ("/\\evil.example", None),
        ("/api/../evil.example", None),
        ("/api/%2e%2e/evil.example", None),
        ("/api/%2E%2E/evil.example", None),
        ("/api/%2fevil.example", None),
        ("/api/x?evil.example=1", None),
        ("/api/evil.example\r\nHost: x", None),
        ("/api/{id}", {"id": ".."}),
        ("/api/{id}", {"id": "."}),
        ("/api/{id}", {"id": ""}),
        ("/api/{id}", {"id": ["evil.example"]}),
        ("/api/{id}", {}),
    ],
)
def test_endpoint_injection_is_refused_before_any_io(
    side: Side, user_service: TestServer, endpoint: str, path_params: Any
) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        side.call("user", "GET", endpoint, path_params=path_params)
    assert "evil" not in str(info.value)
    assert user_service.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "TRACE"},
        {"query_params": {"q": {"nested": 1}}},
        {"payload": {"x": float("nan")}},
        {"files": {"f": "not bytes"}},
        {"response_timeout": 0},
        {"retry_count": -1},
        {"idempotency_key": ""},
    ],
)
def test_other_bad_arguments_are_refused_before_any_io(
    side: Side, user_service: TestServer, kwargs: Any
) -> None:
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "POST")
    with pytest.raises(svclink.InvalidRequest):
        side.call("user", method, "/x", **kwargs)
    assert user_service.requests == []
