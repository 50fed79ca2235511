"""The circuit breaker: stop calling a dependency that keeps failing, and probe for its return.

A breaker per target service per process counts consecutive failures (no response, a
timeout, a 5xx; never a 4xx, which is the caller's problem, not the dependency's). After
``failure_threshold`` of them it opens: calls fail at once with ``CircuitOpen`` instead of
tying up threads and sockets. After ``reset_timeout`` it lets ``half_open_probes`` calls
through; a success closes it, a failure opens it again. Time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from ..locks import ForkSafeLock


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class BreakerPolicy:
    """When a breaker opens and how it probes; ``enabled=False`` turns it off."""

    failure_threshold: int = attrs.field(default=5, validator=_positive)
    reset_timeout: float = attrs.field(default=5.0, validator=_positive)
    half_open_probes: int = attrs.field(default=1, validator=_positive)
    enabled: bool = True


#: called with (service, old state, new state) on every change
StateHook = Callable[[str, State, State], None]


@attrs.define
class CircuitBreaker:
    """The live state of one service's breaker; safe to share between threads."""

    service: str
    policy: BreakerPolicy
    on_change: StateHook | None = None
    state: State = State.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probes: int = 0
    _lock: ForkSafeLock = attrs.field(factory=ForkSafeLock, repr=False)

    def allow(self, now: float) -> bool:
        """Whether a call may start now (a half-open breaker counts it as a probe)."""
        if not self.policy.enabled or self.state is State.CLOSED:  # one read: no lock needed
            return True
        with self._lock:
            if self.state is State.OPEN:
                if now - self.opened_at < self.policy.reset_timeout:
                    return False
                self._move(State.HALF_OPEN)
                self.opened_at, self.probes = now, 0
            if self.state is State.HALF_OPEN:
                if self.probes >= self.policy.half_open_probes:
                    if now - self.opened_at < self.policy.reset_timeout:
                        return False
                    self.opened_at, self.probes = now, 0  # a probe never reported back
                self.probes += 1
            return True

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through."""
        return max(0.0, self.opened_at + self.policy.reset_timeout - now)

    def succeeded(self) -> None:
        if self.state is State.CLOSED and not self.failures:  # nothing to clear: the usual case
            return
        with self._lock:
            self.failures = 0
            if self.state is not State.CLOSED:
                self._move(State.CLOSED)

    def failed(self, now: float) -> None:
        with self._lock:
            self.failures += 1
            opening = self.state is State.HALF_OPEN or (
                self.state is State.CLOSED and self.failures >= self.policy.failure_threshold
            )
            if opening and self.policy.enabled:
                self.opened_at = now
                self._move(State.OPEN)

    def reset(self) -> None:
        """Back to closed with no failures counted, without reporting a change (a test's fresh start)."""
        with self._lock:
            self.state, self.failures, self.opened_at, self.probes = State.CLOSED, 0, 0.0, 0

    def _move(self, new: State) -> None:
        old, self.state = self.state, new
        if self.on_change is not None and old is not new:
            self.on_change(self.service, old, new)
