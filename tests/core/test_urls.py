"""Endpoints: a call can only ever reach a path of its own service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import svclink
from svclink.core.http.urls import build_url, encode_query, fill_path, same_origin

BASE = "http://user.internal:8001"


def test_path_params_fill_the_template() -> None:
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert fill_path("/users/{id}/items/{item}", {"id": 5, "item": uid}) == f"/users/5/items/{uid}"
    assert fill_path("/users/", None) == "/users/"
    assert fill_path("/a/{x}", {"x": 1.5}) == "/a/1.5"


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("../admin", "..%2Fadmin"),
        ("..%2f", "..%252f"),
        ("%2e%2e", "%252e%252e"),
        ("a b?c#d", "a%20b%3Fc%23d"),
        ("\\host", "%5Chost"),
        ("x\r\nHost: evil", "x%0D%0AHost%3A%20evil"),
        ("é", "%C3%A9"),
        ("...", "..."),
    ],
)
def test_a_path_param_is_exactly_one_encoded_segment(value: str, segment: str) -> None:
    assert fill_path("/users/{id}/x", {"id": value}) == f"/users/{segment}/x"


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_dot_and_empty_path_params_are_refused(value: str) -> None:
    with pytest.raises(svclink.InvalidRequest, match="'id'"):
        fill_path("/users/{id}", {"id": value})


@pytest.mark.parametrize("value", [None, True, [1], {"a": 1}, b"x"])
def test_path_params_must_be_scalars(value: object) -> None:
    with pytest.raises(svclink.InvalidRequest, match="path parameter 'id'"):
        fill_path("/users/{id}", {"id": value})


def test_any_mapping_fills_the_template() -> None:
    """Only the Mapping protocol is relied on: a mapping whose keys() is a plain list works too."""

    class Params(Mapping[str, Any]):
        def __init__(self, **values: Any) -> None:
            self._values = values

        def __getitem__(self, key: str) -> Any:
            return self._values[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self._values)

        def __len__(self) -> int:
            return len(self._values)

        def keys(self) -> Any:  # type: ignore[override]
            return list(self._values)

    assert fill_path("/users/{id}/items/{item}", Params(id=5, item="a b")) == "/users/5/items/a%20b"


def test_missing_and_extra_path_params_are_named() -> None:
    with pytest.raises(svclink.InvalidRequest, match="missing id"):
        fill_path("/users/{id}", {})
    with pytest.raises(svclink.InvalidRequest, match="extra"):
        fill_path("/users/", {"extra": 1})


@pytest.mark.parametrize("endpoint", ["/users/{1d}", "/users/{}", "/users/{id", "/users/id}", "/{a{b}}"])
def test_bad_templates_are_refused(endpoint: str) -> None:
    with pytest.raises(svclink.InvalidRequest):
        fill_path(endpoint, {"id": 1, "a": 1, "b": 1, "1d": 1, "": 1})


INJECTIONS = [
    "//evil.example/x",
    "http://evil.example/",
    "https:/evil.example",
    "\\\\evil.example\\x",
    "/\\evil.example",
    "/a/../evil.example",
    "/a/..",
    "/./evil.example",
    "/a/%2e%2e/evil.example",
    "/a/%2E%2e/evil.example",
    "/a/.%2e/evil.example",
    "/a%2fevil.example",
    "/a%2Fevil.example",
    "/a%5cevil.example",
    "/a?evil.example=1",
    "/a#evil.example",
    "/a evil.example",
    "/a\tevil.example",
    "/evil.example\n",
    "/a\r\nHost: evil.example",
    "/a\x00evil.example",
    "/a%zzevil.example",
    "evil.example/a",
    "",
    "/é/evil.example",
]


@pytest.mark.parametrize("endpoint", INJECTIONS)
def test_endpoints_that_could_leave_the_service_are_refused_without_echo(endpoint: str) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        build_url(BASE, endpoint)
    assert "evil.example" not in str(info.value)


@pytest.mark.parametrize("endpoint", [None, 5, b"/a"])
def test_the_endpoint_must_be_a_str(endpoint: Any) -> None:
    with pytest.raises(svclink.InvalidRequest, match="must be a str"):
        build_url(BASE, endpoint)


def test_harmless_path_characters_pass() -> None:
    endpoint = "/api/v1/users/~me/a-b_c.d/@x:y;z=1,2!$&'()*+/%41/"
    assert build_url(BASE, endpoint) == BASE + endpoint


def test_a_base_path_is_kept() -> None:
    assert build_url("http://gw:80/user-svc", "/api/{id}", {"id": 1}) == "http://gw:80/user-svc/api/1"


def test_query_params_encoding() -> None:
    query = encode_query(
        {"q": "a b&c=d", "tag": ["x", "y", None], "on": True, "off": False, "none": None, "n": 1.5}
    )
    assert query == "q=a%20b%26c%3Dd&tag=x&tag=y&on=true&off=false&n=1.5"
    assert encode_query({"ids": (1, 2)}) == "ids=1&ids=2"
    assert encode_query(None) == ""
    assert encode_query({}) == ""
    assert encode_query({"q": None}) == ""


@pytest.mark.parametrize("params", [{"q": {"a": 1}}, {"q": [[1]]}, {"": 1}, {1: "a"}, [("q", 1)]])
def test_bad_query_params_are_refused(params: Any) -> None:
    with pytest.raises(svclink.InvalidRequest):
        encode_query(params)


def test_build_url_adds_the_query() -> None:
    url = build_url(BASE, "/users/{id}", {"id": "a/b"}, {"q": "x", "flag": True})
    assert url == BASE + "/users/a%2Fb?q=x&flag=true"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h:1/a", "http://h:1/b?x", True),
        ("http://h:1/a", "HTTP://H:1/b", True),
        ("http://h:1/a", "https://h:1/a", False),
        ("http://h:1/a", "http://h:2/a", False),
        ("http://h:1/a", "http://evil:1/a", False),
        ("http://h:1/a", "http://h:1@evil:1/a", False),
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(a, b) is same


# Property: whatever the endpoint and parameters, the URL never names another host, and
# each path parameter stays one segment that decodes back to exactly its value.

NASTY = st.sampled_from(
    ["/", "//", "..", ".", "%2e", "%2E", "%2f", "%5c", "%", "\\", "@", ":", "?", "#", "{id}", "{", "}",
     "http:", "evil.example", "a", "\r", "\n", "\x00", " ", "\t", "é", "%00", "~"]
)  # fmt: skip
ENDPOINTS = st.one_of(st.text(max_size=40), st.lists(NASTY, max_size=12).map("".join))
VALUES = st.one_of(
    st.text(max_size=30), st.lists(NASTY, max_size=8).map("".join), st.integers(), st.floats(), st.uuids()
)
BASES = st.sampled_from(["http://127.0.0.1:8001", "https://user.internal", "http://gw:80/prefix"])


@settings(max_examples=400, deadline=None)
@given(base=BASES, endpoint=ENDPOINTS, value=VALUES, query=st.dictionaries(st.text(), st.text()))
def test_property_no_input_leaves_the_base(base: str, endpoint: str, value: Any, query: Any) -> None:
    for template in (endpoint, "/users/{id}" + endpoint):
        try:
            url = build_url(base, template, {"id": value} if "{id}" in template else None, query)
        except svclink.InvalidRequest:
            continue
        target, origin = urlsplit(url), urlsplit(base)
        assert (target.scheme, target.netloc) == (origin.scheme, origin.netloc)
        assert target.path.startswith(origin.path + "/")
        assert not any(c in url for c in "\r\n\x00\t \\")


@settings(max_examples=300, deadline=None)
@given(value=VALUES)
def test_property_a_path_param_stays_one_segment(value: Any) -> None:
    try:
        url = build_url(BASE, "/users/{id}/orders", {"id": value})
    except svclink.InvalidRequest:
        assert str(value) in ("", ".", "..")
        return
    segments = urlsplit(url).path.split("/")
    assert len(segments) == 4
    assert segments[1] == "users" and segments[3] == "orders"
    assert unquote(segments[2]) == str(value)


def test_same_origin_treats_the_default_port_as_written() -> None:
    from svclink.core.http.urls import same_origin

    assert same_origin("http://user/a", "http://user:80/b")
    assert same_origin("https://user/a", "https://user:443/b")
    assert not same_origin("http://user/a", "https://user/a")
    assert not same_origin("http://user/a", "http://user:99999/")
