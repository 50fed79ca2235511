"""The retry budget: retries to a service are capped at a fraction of its recent calls.

Per-call retries alone multiply load on a failing dependency by ``1 + retry_count``,
just when it can least take it. The budget (as in Finagle and Envoy) allows, over a
sliding window, at most ``min_retries + ratio * calls`` retries to one service, so a
dependency that fails everything sees about ``1 + ratio`` times the traffic. Time is
passed in; the window is kept as one counter pair per second.
"""

from __future__ import annotations

import math

import attrs

from ..locks import ForkSafeLock


def _fraction(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@attrs.frozen
class BudgetPolicy:
    """``ratio`` of recent calls may be retried, plus ``min_retries`` per window, always."""

    ratio: float = attrs.field(default=0.2, validator=_fraction)
    min_retries: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    window: int = attrs.field(default=10, validator=attrs.validators.ge(1))


@attrs.define
class RetryBudget:
    """The live counts of one service's budget; safe to share between threads."""

    policy: BudgetPolicy
    #: second -> [calls, retries]
    _buckets: dict[int, list[int]] = attrs.field(factory=dict, repr=False)
    _lock: ForkSafeLock = attrs.field(factory=ForkSafeLock, repr=False)

    def _bucket(self, now: float) -> list[int]:
        second = math.floor(now)
        bucket = self._buckets.get(second)
        if bucket is None:
            oldest = second - self.policy.window
            for key in [k for k in self._buckets if k <= oldest]:
                del self._buckets[key]
            bucket = self._buckets[second] = [0, 0]
        return bucket

    def called(self, now: float) -> None:
        """Count a new call (not a retry)."""
        with self._lock:
            self._bucket(now)[0] += 1

    def try_retry(self, now: float) -> bool:
        """Spend one retry if the budget allows it now; False means do not retry."""
        with self._lock:
            bucket = self._bucket(now)
            oldest = math.floor(now) - self.policy.window
            calls = retries = 0
            for second, (c, r) in self._buckets.items():
                if second > oldest:
                    calls, retries = calls + c, retries + r
            if retries >= self.policy.min_retries + self.policy.ratio * calls:
                return False
            bucket[1] += 1
            return True

    def reset(self) -> None:
        """Forget every call and retry counted (a test's fresh start)."""
        with self._lock:
            self._buckets.clear()
