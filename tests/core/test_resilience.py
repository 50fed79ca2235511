"""The circuit breaker and the retry budget as pure values driven by a fake clock."""

from __future__ import annotations

import pytest

from svclink.core.policy.breaker import BreakerPolicy, CircuitBreaker, State
from svclink.core.policy.budget import BudgetPolicy, RetryBudget


def breaker(**policy: object) -> tuple[CircuitBreaker, list[tuple[State, State]]]:
    changes: list[tuple[State, State]] = []
    b = CircuitBreaker("user", BreakerPolicy(**policy), lambda _s, old, new: changes.append((old, new)))  # type: ignore[arg-type]
    return b, changes


def test_opens_after_a_run_of_failures_and_fails_fast() -> None:
    b, changes = breaker(failure_threshold=3, reset_timeout=5)
    for t in range(2):
        assert b.allow(t)
        b.failed(t)
    assert b.state is State.CLOSED
    assert b.allow(2)
    b.failed(2)
    assert b.state is State.OPEN
    assert not b.allow(3)
    assert b.retry_in(3) == pytest.approx(4)
    assert changes == [(State.CLOSED, State.OPEN)]


def test_a_success_resets_the_run() -> None:
    b, _ = breaker(failure_threshold=2)
    b.failed(0)
    b.succeeded()
    b.failed(1)
    assert b.state is State.CLOSED


def test_half_open_lets_limited_probes_through_then_closes_on_success() -> None:
    b, changes = breaker(failure_threshold=1, reset_timeout=5, half_open_probes=1)
    b.failed(0)
    assert not b.allow(4.9)
    assert b.allow(5.0)  # the probe
    assert b.state is State.HALF_OPEN
    assert not b.allow(5.1)  # only one probe at a time
    b.succeeded()
    assert b.state is State.CLOSED
    assert b.allow(5.2)
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_probe_opens_again() -> None:
    b, _ = breaker(failure_threshold=1, reset_timeout=5)
    b.failed(0)
    assert b.allow(5)
    b.failed(5)
    assert b.state is State.OPEN
    assert not b.allow(9)
    assert b.allow(10)


def test_a_probe_that_never_reports_back_does_not_wedge_the_breaker() -> None:
    b, _ = breaker(failure_threshold=1, reset_timeout=5)
    b.failed(0)
    assert b.allow(5)  # probe lost (e.g. a cancelled task)
    assert not b.allow(6)
    assert b.allow(10)


def test_disabled_breaker_always_allows() -> None:
    b, _ = breaker(failure_threshold=1, enabled=False)
    for t in range(10):
        b.failed(t)
        assert b.allow(t)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerPolicy(failure_threshold=0)
    with pytest.raises(ValueError, match="ratio"):
        BudgetPolicy(ratio=1.5)


def test_budget_caps_retries_at_ratio_of_calls_plus_floor() -> None:
    budget = RetryBudget(BudgetPolicy(ratio=0.2, min_retries=3, window=10))
    allowed = 0
    for i in range(100):
        now = i * 0.05  # 100 calls in 5 s, all failing
        budget.called(now)
        allowed += budget.try_retry(now) + budget.try_retry(now)
    assert allowed == 3 + 20  # floor + 20% of 100 calls, not 200


def test_budget_window_slides() -> None:
    budget = RetryBudget(BudgetPolicy(ratio=0.0, min_retries=1, window=2))
    assert budget.try_retry(0.0)
    assert not budget.try_retry(1.5)
    assert budget.try_retry(2.0)  # the retry at t=0 has left the window
