"""The core decisions the HTTP transports share, tested without sockets: durations, bounded
bodies, which failures the breaker counts and which may be retried, connection reuse."""

from __future__ import annotations

import math

import pytest

from svclink.core import durations
from svclink.core.errors import TransportFailure
from svclink.core.http.attempts import counts_for_breaker, keep_connection
from svclink.core.http.bodies import Body, TooLarge, declared_size
from svclink.core.http.hosts import host_problem
from svclink.core.policy.retry import Outcome, RetryPolicy


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(1, 1.0), (0.5, 0.5), (1e10, durations.MAX_SECONDS), (2**63, durations.MAX_SECONDS),
     (10**5000, durations.MAX_SECONDS), (0, None), (-(10**5000), None), (math.nan, None),
     (math.inf, None), (True, None), ("5", None)],
    ids=lambda v: f"{type(v).__name__}-{v.bit_length()}bits" if isinstance(v, int) else repr(v),
)  # fmt: skip
def test_durations_are_clamped_to_a_year_or_refused(value: object, seconds: float | None) -> None:
    assert durations.seconds(value) == seconds


def test_a_body_is_checked_against_its_announced_length_first() -> None:
    with pytest.raises(TooLarge) as info:
        Body.start("GET", 200, {"content-length": "11"}, 10)
    assert (info.value.status, info.value.limit, info.value.declared) == (200, 10, 11)
    assert Body.start("GET", 200, {"content-length": "10"}, 10).read == 0


@pytest.mark.parametrize(
    ("method", "status", "headers"),
    [("HEAD", 200, {"content-length": "99"}), ("GET", 304, {"content-length": "99"}),
     ("GET", 200, {"content-length": "99", "content-encoding": "gzip"}),
     ("GET", 200, {"content-length": "x"})],
)  # fmt: skip
def test_no_announced_length_when_the_headers_do_not_say_it_for_sure(
    method: str, status: int, headers: dict[str, str]
) -> None:
    assert declared_size(method, status, headers) is None
    Body.start(method, status, headers, 10)  # not refused on its headers


def test_a_body_keeps_nothing_past_its_bound() -> None:
    body = Body.start("GET", 200, {}, 10)
    body.add(b"12345")
    body.add(b"67890")
    with pytest.raises(TooLarge) as info:
        body.add(b"x")
    assert info.value.declared is None
    assert body.value() == b"1234567890"


@pytest.mark.parametrize(
    ("kind", "reused", "counts"),
    [(TransportFailure.CONNECT, False, True), (TransportFailure.RESET, False, True),
     (TransportFailure.RESET, True, False), (TransportFailure.NOT_SENT, True, False),
     (TransportFailure.NOT_SENT, False, True), (TransportFailure.TIMEOUT, True, True),
     (TransportFailure.POOL, False, False)],
)  # fmt: skip
def test_which_failures_the_breaker_counts(kind: TransportFailure, reused: bool, counts: bool) -> None:
    assert counts_for_breaker(kind, reused) is counts


def test_a_request_not_sent_whole_is_retried_for_any_method() -> None:
    policy = RetryPolicy()
    for method in ("POST", "PATCH", "GET"):
        assert policy.is_retryable(method, Outcome(failure=TransportFailure.NOT_SENT), False)
    assert not policy.is_retryable("POST", Outcome(failure=TransportFailure.RESET), False)


def test_a_connection_is_kept_after_any_answer_below_500() -> None:
    assert [keep_connection(s) for s in (200, 301, 404, 499, 500, 503)] == [True] * 4 + [False] * 2


@pytest.mark.parametrize(
    ("host", "ok"),
    [("user", True), ("svc_a", True), ("10.0.0.1", True), ("::1", True), ("xn--fiqs8s.example", True),
     ("\u00fcn\u00ef.example", True), ("1.2.3.256", False), ("xn--abc", False), ("\u2603.net", False)],
)  # fmt: skip
def test_host_names_every_transport_can_send_to(host: str, ok: bool) -> None:
    assert (host_problem(host) is None) is ok
