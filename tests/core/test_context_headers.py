"""The headers every outgoing call carries, and the validation that keeps CR/LF off the wire."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import svclink
from svclink.core.context import value as context
from svclink.core.context.outgoing import check_header, outgoing_headers
from svclink.core.context.value import bind


def headers(**kwargs: Any) -> dict[str, str]:
    values: dict[str, Any] = {"caller": None, "context": None, "extra": None, "idempotency_key": None}
    values.update(kwargs)
    return outgoing_headers(**values)


def test_defaults() -> None:
    h = headers()
    assert h["User-Agent"] == f"svclink/{svclink.__version__}"
    assert h["Accept"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", h["X-Request-ID"])
    assert "X-Svclink-Caller" not in h
    assert "Idempotency-Key" not in h


def test_each_call_gets_a_new_request_id() -> None:
    assert headers()["X-Request-ID"] != headers()["X-Request-ID"]


def test_caller_and_context() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = svclink.RequestContext(request_id="req-1", traceparent=tp, tracestate="k=v")
    h = headers(caller="api", context=ctx)
    assert h["X-Request-ID"] == "req-1"
    assert h["X-Svclink-Caller"] == "api"
    assert h["traceparent"] == tp
    assert h["tracestate"] == "k=v"


def test_idempotency_key() -> None:
    assert headers(idempotency_key="order-7")["Idempotency-Key"] == "order-7"
    with pytest.raises(svclink.InvalidRequest):
        headers(idempotency_key="k\r\nX-Evil: 1")


def test_the_callers_headers_replace_defaults_whatever_their_case() -> None:
    h = headers(extra={"user-agent": "mine/1", "x-request-id": "abc", "X-Extra": "1"})
    lowered = {k.lower(): v for k, v in h.items()}
    assert len(lowered) == len(h)
    assert lowered["user-agent"] == "mine/1"
    assert lowered["x-request-id"] == "abc"
    assert lowered["x-extra"] == "1"


def test_the_same_header_twice_in_different_case_is_sent_once() -> None:
    h = headers(extra={"X-A": "1", "x-a": "2"})
    assert [(k, v) for k, v in h.items() if k.lower() == "x-a"] == [("x-a", "2")]


def test_headers_must_be_a_mapping() -> None:
    with pytest.raises(svclink.InvalidRequest, match="mapping"):
        headers(extra=[("X-A", "1")])


@pytest.mark.parametrize(
    "name",
    ["X-A\r\nX-Evil", "X-A\nX-Evil", "X-A\n", "X-A\x00", "X A", "X-A:", "", "Ümlaut", "X-A\t", 5, None],
)
def test_bad_header_names_are_refused_without_echo(name: Any) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        check_header(name, "v")
    assert "Evil" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    ["a\r\nX-Evil: 1", "a\nX-Evil", "a\rX-Evil", "a\x00X-Evil", "\nX-Evil", "a\x0bX-Evil", "a\x7fX-Evil",
     "é X-Evil", "€ X-Evil"],
)  # fmt: skip
def test_bad_header_values_are_refused_without_echo(value: str) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        check_header("X-A", value)
    assert "X-A" in str(info.value)
    assert "Evil" not in str(info.value)


@pytest.mark.parametrize("value", [5, None, b"v"])
def test_header_values_must_be_str(value: Any) -> None:
    with pytest.raises(svclink.InvalidRequest, match="must have a str value"):
        check_header("X-A", value)


@pytest.mark.parametrize(
    ("value", "sent"), [("v", "v"), ("a\tb c", "a\tb c"), ("  v \t", "v"), ("", ""), ("~!@#", "~!@#")]
)
def test_good_header_values_with_surrounding_blanks_trimmed(value: str, sent: str) -> None:
    assert check_header("X-A", value) == ("X-A", sent)


def test_bind_generates_a_request_id_and_restores_the_previous_context() -> None:
    assert context.current() is None
    with bind(user_id="7") as outer:
        assert re.fullmatch(r"[0-9a-f]{32}", outer.request_id)
        assert context.current() is outer
        with bind(request_id="inner") as inner:
            assert inner.user_id == "7"  # copied from the outer context
            assert context.current() is inner
        assert context.current() is outer
    assert context.current() is None


def test_a_bound_context_follows_into_asyncio_tasks() -> None:
    async def read() -> str | None:
        ctx = context.current()
        return ctx.request_id if ctx else None

    async def main() -> str | None:
        with bind(request_id="req-task"):
            return await asyncio.create_task(read())

    assert asyncio.run(main()) == "req-task"


# Property: whatever header names and values a caller passes, a header with CR, LF or NUL
# never comes out, and a refusal never repeats what was injected.

HEADER_TEXT = st.one_of(
    st.text(max_size=20),
    st.lists(st.sampled_from(["X-A", "\r", "\n", "\x00", " ", ":", "\t", "é", "v"]), max_size=8).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(extra=st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=4), key=st.none() | HEADER_TEXT)
def test_property_no_header_carries_cr_lf_or_nul(extra: dict[str, str], key: str | None) -> None:
    try:
        h = headers(caller="api", extra=extra, idempotency_key=key)
    except svclink.InvalidRequest:
        return
    for name, value in h.items():
        assert not re.search(r"[\r\n\x00]", name + value)
        assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name)


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=10), name=st.sampled_from(["X-A", "X-A\r\n"]))
def test_property_refusals_never_echo_an_injection(prefix: str, name: str) -> None:
    with pytest.raises(svclink.InvalidRequest) as info:
        headers(extra={name: prefix + "\r\nInjected-Header: yes"})
    assert "Injected" not in str(info.value)
