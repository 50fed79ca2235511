"""What a service decides before any I/O: URL, headers, body, timeouts and retry policy."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

import pytest

import svclink
from svclink.core.context.value import bind
from svclink.core.http import service as service_module
from svclink.core.http.calls import CallPlan
from svclink.core.http.service import BaseService, encode_json
from svclink.core.settings import Settings

BASE = "http://user.internal:8001"


def svc(**settings: Any) -> BaseService:
    values: dict[str, Any] = {
        "service_name": "api",
        "service_connections": ["user"],
        "service_hosts": {"user": BASE},
    }
    values.update(settings)
    return BaseService("user", Settings(**values))


def plan(method: str = "GET", endpoint: str = "/users/", **kwargs: Any) -> CallPlan:
    return svc().plan(method, endpoint, **kwargs)


def test_service_repr_and_base_url() -> None:
    s = svc()
    assert s.base_url == BASE
    assert repr(s) == f"<svclink.core.http.service.BaseService 'user' at {BASE}>"


def test_an_undeclared_service_cannot_be_built() -> None:
    with pytest.raises(svclink.ServiceNotDeclared):
        BaseService("billing", Settings(service_connections=["user"]))


@pytest.mark.parametrize("method", ["get", "Post", "PATCH", "head", "options"])
def test_methods_are_normalised(method: str) -> None:
    assert plan(method).method == method.upper()


@pytest.mark.parametrize("method", ["CONNECT", "TRACE", "GET /x HTTP/1.1", "", None, 5])
def test_other_methods_are_refused(method: Any) -> None:
    with pytest.raises(svclink.InvalidRequest, match="method must be one of"):
        plan(method)


def test_url_and_identity() -> None:
    p = plan("GET", "/users/{id}", path_params={"id": "a/b"}, query_params={"q": ["x", "y"]})
    assert p.url == BASE + "/users/a%2Fb?q=x&q=y"
    assert p.endpoint == "/users/{id}"
    assert p.headers["X-Svclink-Caller"] == "api"
    assert p.request_id == p.headers["X-Request-ID"]
    assert "X-Svclink-Caller" not in svc(service_name=None).plan("GET", "/").headers


def test_the_bound_context_gives_request_id_and_deadline() -> None:
    with bind(request_id="req-9", deadline=123.0):
        p = plan()
    assert p.request_id == "req-9"
    assert p.context_deadline == 123.0


def test_json_payload() -> None:
    p = plan("POST", "/users/", payload={"name": "é", "when": datetime.date(2024, 1, 2)})
    assert p.content == '{"name":"é","when":"2024-01-02"}'.encode()
    assert p.headers["Content-Type"] == "application/json"
    assert p.form is None and p.files is None


def test_the_callers_content_type_wins() -> None:
    p = plan("PATCH", "/users/1", payload={"a": 1}, headers={"content-type": "application/merge-patch+json"})
    types = [v for k, v in p.headers.items() if k.lower() == "content-type"]
    assert types == ["application/merge-patch+json"]


def test_json_conversions() -> None:
    uid = uuid.uuid4()
    data = {
        "at": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "id": uid,
        "price": decimal.Decimal("1.10"),
        "tags": {"b", "a"},
        "t": datetime.time(1, 2),
    }
    assert json.loads(encode_json(data)) == {
        "at": "2024-01-02T03:04:05+00:00", "id": str(uid), "price": "1.10", "tags": ["a", "b"],
        "t": "01:02:00",
    }  # fmt: skip


@pytest.mark.parametrize("payload", [{"x": object()}, {"x": float("nan")}, {"x": b"bytes"}, {1j: 1}])
def test_payloads_that_are_not_json_are_refused(payload: Any) -> None:
    with pytest.raises(svclink.InvalidRequest, match="JSON"):
        plan("POST", "/", payload=payload)


def test_a_payload_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "MAX_PAYLOAD_BYTES", 100)
    with pytest.raises(svclink.InvalidRequest, match="over the limit"):
        plan("POST", "/", payload={"x": "y" * 200})


def test_multipart() -> None:
    p = plan(
        "POST", "/avatars/", payload={"user": "1", "size": 2},
        files={"avatar": ("a.png", b"\x89PNG", "image/png"), "raw": b"data", "doc": ("d.txt", b"t")},
    )  # fmt: skip
    assert p.form == {"user": "1", "size": "2"}
    assert p.files == {
        "avatar": ("a.png", b"\x89PNG", "image/png"),
        "raw": ("raw", b"data"),
        "doc": ("d.txt", b"t"),
    }
    ctype = p.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("=", 1)[1]
    assert p.content is not None
    assert p.content.replace(boundary.encode(), b"B") == (
        b'--B\r\nContent-Disposition: form-data; name="user"\r\n\r\n1\r\n'
        b'--B\r\nContent-Disposition: form-data; name="size"\r\n\r\n2\r\n'
        b'--B\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n"
        b'--B\r\nContent-Disposition: form-data; name="raw"; filename="raw"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\ndata\r\n"
        b'--B\r\nContent-Disposition: form-data; name="doc"; filename="d.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nt\r\n"
        b"--B--\r\n"
    )


def test_multipart_filenames_are_quoted_strings_with_backslash_escapes() -> None:
    p = plan(
        "POST", "/up", files={'n"a\\me': ('a "b" \\c\\ é.png', b"x")}, headers={"content-type": "text/x"}
    )
    assert p.content is not None
    assert b'name="n\\"a\\\\me"; filename="a \\"b\\" \\\\c\\\\ \xc3\xa9.png"' in p.content
    assert b"Content-Type: image/png" in p.content
    assert [k for k in p.headers if k.lower() == "content-type"] == ["Content-Type"]


@pytest.mark.parametrize(
    ("payload", "files"),
    [
        (None, {"f": "text"}),
        (None, {"f": ("a.png",)}),
        (None, {"f": ("a.png", "not bytes")}),
        (None, {"f": ("a.png", b"x", 5)}),
        (None, {"f": ("a.png", b"x", "image/png\r\nX-Evil: 1")}),
        (None, [("f", b"x")]),
        ("text", {"f": b"x"}),
        ({"flag": True}, {"f": b"x"}),
        ({"nested": {"a": 1}}, {"f": b"x"}),
    ],
)
def test_bad_multipart_is_refused(payload: Any, files: Any) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        plan("POST", "/", payload=payload, files=files)
    assert "Evil" not in str(info.value)


def test_timeouts() -> None:
    p = svc(response_timeout=4, connect_timeout=1).plan("GET", "/")
    assert (p.timeout, p.connect_timeout) == (4.0, 1.0)
    assert plan(response_timeout=0.5).timeout == 0.5


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "1"])
def test_bad_response_timeouts_are_refused(value: Any) -> None:
    with pytest.raises(svclink.InvalidRequest, match="response_timeout"):
        plan(response_timeout=value)


def test_retry_count_overrides_the_policy_total() -> None:
    s = svc(retry=svclink.RetryPolicy(total=5, backoff_factor=0.3))
    p = s.plan("GET", "/", retry_count=1)
    assert p.policy == svclink.RetryPolicy(total=1, backoff_factor=0.3)
    assert s.plan("GET", "/").policy.total == 5


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_bad_retry_counts_are_refused(value: Any) -> None:
    with pytest.raises(svclink.InvalidRequest, match="retry_count"):
        plan(retry_count=value)


def test_idempotency_key() -> None:
    p = plan("POST", "/", idempotency_key="k-1")
    assert (p.idempotency_key, p.headers["Idempotency-Key"]) == ("k-1", "k-1")
    for bad in ("", 5):
        with pytest.raises(svclink.InvalidRequest, match="idempotency_key"):
            plan("POST", "/", idempotency_key=bad)


def test_propagate_error_defaults_to_the_setting() -> None:
    assert plan().propagate_error is True
    assert svc(propagate_error=False).plan("GET", "/").propagate_error is False
    assert svc(propagate_error=False).plan("GET", "/", propagate_error=True).propagate_error is True


def test_bad_input_is_refused_before_anything_else() -> None:
    for kwargs in (
        {"endpoint": "//evil.example/x"},
        {"endpoint": "/x", "headers": {"X-A": "1\r\nX-Evil: 1"}},
        {"endpoint": "/x", "query_params": {"q": object()}},
    ):
        with pytest.raises(svclink.InvalidRequest) as info:
            plan("GET", **kwargs)
        assert "evil" not in str(info.value).lower()
