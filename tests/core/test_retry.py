"""The retry policy decides whether and how long to wait; it never sleeps and reads no clock."""

from __future__ import annotations

import email.utils

import pytest

from svclink.core.errors import TransportFailure
from svclink.core.policy.retry import Outcome, RetryPolicy, parse_retry_after

CONNECT = Outcome(failure=TransportFailure.CONNECT)
RESET = Outcome(failure=TransportFailure.RESET)
TIMEOUT = Outcome(failure=TransportFailure.TIMEOUT)


def status(code: int, retry_after: float | None = None) -> Outcome:
    return Outcome(status=code, retry_after=retry_after)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    p = RetryPolicy(backoff_factor=0.1, backoff_max=0.5, jitter=0.0)
    assert [p.backoff(n, 0.0) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_only_shortens_the_wait() -> None:
    p = RetryPolicy(backoff_factor=1.0, jitter=0.5)
    assert p.backoff(1, 0.0) == 1.0
    assert p.backoff(1, 0.999) == pytest.approx(0.5005)
    assert RetryPolicy(backoff_factor=1.0, jitter=0.0).backoff(1, 0.9) == 1.0


@pytest.mark.parametrize(
    ("kwargs"),
    [{"total": -1}, {"backoff_factor": -0.1}, {"backoff_max": -1}, {"jitter": 1.5}, {"jitter": -0.1},
     {"max_retry_after": -1}],
)  # fmt: skip
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "outcome", "key", "retryable"),
    [
        # nothing reached the server: any method
        ("GET", CONNECT, False, True),
        ("POST", CONNECT, False, True),
        # the request may have been processed: idempotent methods, or with a key
        ("GET", RESET, False, True),
        ("PUT", RESET, False, True),
        ("DELETE", TIMEOUT, False, True),
        ("POST", RESET, False, False),
        ("PATCH", TIMEOUT, False, False),
        ("POST", RESET, True, True),
        # statuses
        ("GET", status(502), False, True),
        ("GET", status(503), False, True),
        ("GET", status(504), False, True),
        ("GET", status(500), False, False),
        ("GET", status(404), False, False),
        ("GET", status(429), False, False),
        ("GET", status(429, 1.0), False, True),
        ("GET", status(503, 1.0), False, True),
        ("GET", status(500, 1.0), False, False),
        ("POST", status(503), False, False),
        ("POST", status(429, 1.0), False, False),
        ("POST", status(503), True, True),
        ("PATCH", status(429, 0.0), True, True),
        ("GET", Outcome(), False, False),
    ],
)
def test_what_may_be_retried(method: str, outcome: Outcome, key: bool, retryable: bool) -> None:
    assert RetryPolicy().is_retryable(method, outcome, key) is retryable


DEFAULT = RetryPolicy()


def decide(policy: RetryPolicy = DEFAULT, **kwargs: object) -> tuple[bool, float]:
    values: dict[str, object] = {
        "method": "GET",
        "outcome": status(503),
        "retries_done": 0,
        "remaining": 10.0,
    }
    values.update(kwargs)
    d = policy.decide(**values)  # type: ignore[arg-type]
    return d.retry, d.wait


def test_decide_waits_the_backoff() -> None:
    p = RetryPolicy(total=3, backoff_factor=0.1, jitter=0.5)
    assert decide(p) == (True, pytest.approx(0.1))
    assert decide(p, retries_done=2, rand=0.5) == (True, pytest.approx(0.4 * 0.75))


def test_decide_stops_when_retries_are_spent() -> None:
    p = RetryPolicy(total=2)
    assert decide(p, retries_done=1)[0] is True
    assert decide(p, retries_done=2) == (False, 0.0)
    assert decide(RetryPolicy(total=0)) == (False, 0.0)


def test_decide_honours_retry_after() -> None:
    assert decide(outcome=status(429, 2.0)) == (True, 2.0)
    assert decide(outcome=status(503, 0.0)) == (True, 0.0)


def test_a_retry_after_over_the_cap_stops_at_once() -> None:
    p = RetryPolicy(max_retry_after=5.0)
    assert decide(p, outcome=status(503, 6.0), remaining=100.0) == (False, 0.0)


def test_a_wait_past_the_deadline_stops_at_once() -> None:
    assert decide(outcome=status(429, 3.0), remaining=2.0) == (False, 0.0)
    assert decide(outcome=status(429, 2.0), remaining=2.0) == (False, 0.0)
    assert decide(RetryPolicy(backoff_factor=1.0, jitter=0.0), remaining=0.5) == (False, 0.0)


def test_decide_reason() -> None:
    p = RetryPolicy()
    assert p.decide(method="GET", outcome=RESET, retries_done=0, remaining=5).reason == "reset"
    assert p.decide(method="GET", outcome=status(502), retries_done=0, remaining=5).reason == "status 502"


def test_parse_retry_after_seconds() -> None:
    assert parse_retry_after({"retry-after": "120"}, 0.0) == 120.0
    assert parse_retry_after({"retry-after": " 0 "}, 0.0) == 0.0
    assert parse_retry_after({}, 0.0) is None


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    in_30s = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": in_30s}, now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now) == 0.0


@pytest.mark.parametrize("value", ["-1", "1.5", "soon", "", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_parse_retry_after_ignores_garbage(value: str) -> None:
    assert parse_retry_after({"retry-after": value}, 0.0) is None
