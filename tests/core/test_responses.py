"""Decoding bodies and reading the error bodies of common frameworks, always bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from svclink.core.http.responses import (
    EXCERPT_CHARS,
    NotJSON,
    Response,
    decode_json,
    error_details,
    excerpt,
    is_json,
)

JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain; charset=utf-8"}


def details(body: Any, headers: dict[str, str] = JSON, status: int = 400, reason: str = "Bad Request") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return error_details(status, reason, headers, raw)


def test_excerpt() -> None:
    assert excerpt("abc", 5) == "abc"
    assert excerpt("abcdef", 3) == "abc…"


@pytest.mark.parametrize(
    ("ctype", "ok"),
    [("application/json", True), ("Application/JSON; charset=utf-8", True),
     ("application/problem+json", True), ("text/html", False), ("", False), ("application/jsonx", False)],
)  # fmt: skip
def test_is_json(ctype: str, ok: bool) -> None:
    assert is_json({"content-type": ctype}) is ok


def test_decode_json() -> None:
    assert decode_json(JSON, b'{"a": [1, "\xc3\xa9"]}') == {"a": [1, "é"]}
    assert decode_json(JSON, b"") is None
    assert decode_json(JSON, b"  \r\n") is None
    assert decode_json({}, b"[1]") == [1]  # no content type: try JSON


@pytest.mark.parametrize(
    ("headers", "body"), [(TEXT, b"[1]"), (JSON, b"<html>"), (JSON, b"\xff\xfe"), ({}, b"plain words")]
)
def test_decode_json_refuses_what_is_not_json(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(NotJSON):
        decode_json(headers, body)


def test_response_value() -> None:
    r = Response(200, {"content-type": "application/json"}, b'{"a": 1}', "http://h/x")
    assert r.json() == {"a": 1}
    assert r.text == '{"a": 1}'


def test_insanic_errors() -> None:
    d = details(
        {"message": "User not found.", "description": "No user has id 5.",
         "error_code": {"name": "USER_NOT_FOUND", "value": 40401}, "status_code": 404}
    )  # fmt: skip
    assert (d.message, d.error_code, d.description) == (
        "User not found.",
        "USER_NOT_FOUND",
        "No user has id 5.",
    )
    assert details({"message": "m", "error_code": {"value": 999}}).error_code == "999"


def test_drf_detail() -> None:
    d = details({"detail": "Authentication credentials were not provided."}, status=401)
    assert d.message == "Authentication credentials were not provided."
    assert d.error_code is None
    assert details({"detail": "Throttled.", "code": "throttled"}).error_code == "throttled"


def test_drf_field_errors() -> None:
    d = details({"email": ["Enter a valid email address."], "age": ["Must be >= 0.", "Required."]})
    assert d.message == "email: Enter a valid email address.; age: Must be >= 0."
    assert (
        details({"non_field_errors": ["Passwords differ."]}).message == "non_field_errors: Passwords differ."
    )


def test_fastapi_validation_errors() -> None:
    d = details(
        {"detail": [
            {"loc": ["body", "name"], "msg": "field required", "type": "value_error.missing"},
            {"loc": ["query", "limit"], "msg": "not an int", "type": "type_error.integer"},
        ]},
        status=422,
    )  # fmt: skip
    assert d.message == "body.name: field required; query.limit: not an int"
    assert d.error_code == "value_error.missing"
    assert details({"detail": "Item not found"}, status=404).message == "Item not found"


def test_json_strings_lists_and_empty_objects() -> None:
    assert details("just a string").message == "just a string"
    assert details(["first", "second"]).message == "first; second"
    assert details({}).message == "Bad Request"


def test_plain_text_and_html() -> None:
    d = details(b"\n  Service down for maintenance\nback soon", TEXT, 503, "Service Unavailable")
    assert d.message == "Service down for maintenance"
    assert d.description is not None and "back soon" in d.description
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    assert details(html, {"content-type": "text/html"}, 502).message.startswith("<html>")


def test_an_empty_body_gives_the_reason() -> None:
    assert details(b"", {}, 404, "Not Found").message == "Not Found"
    assert details(b"", {}, 404, "").message == "HTTP 404"


def test_a_json_error_with_a_wrong_content_type_is_read_as_text() -> None:
    d = details(b'{"detail": "x"}', TEXT)
    assert d.message == '{"detail": "x"}'


def test_small_json_bodies_are_kept_large_ones_dropped() -> None:
    assert details({"detail": "x"}).body == {"detail": "x"}
    big = details({"detail": "x", "trace": "y" * 10_000})
    assert big.message == "x"
    assert big.body is None


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"<html>" + b"A" * 10_000_000 + b"</html>", {"content-type": "text/html"}),
        (b"B" * 10_000_000, TEXT),
        (json.dumps({"detail": "C" * 10_000_000}).encode(), JSON),
        (json.dumps({"message": "D" * 100_000, "description": "E" * 100_000}).encode(), JSON),
        (json.dumps({"field": ["F" * 100_000]}).encode(), JSON),
        (json.dumps({"detail": [{"loc": ["x"], "msg": "G" * 100_000}] * 1000}).encode(), JSON),
        ("é".encode() * 5_000_000, TEXT),
    ],
)
def test_huge_error_bodies_give_bounded_details(body: bytes, headers: dict[str, str]) -> None:
    d = error_details(500, "Internal Server Error", headers, body)
    assert len(d.message) <= EXCERPT_CHARS + 1
    assert d.description is None or len(d.description) <= EXCERPT_CHARS + 1
    assert d.body is None or len(json.dumps(d.body, ensure_ascii=False)) <= 4 * EXCERPT_CHARS + 2
    assert d.error_code is None or len(d.error_code) <= EXCERPT_CHARS + 1
