"""The retry policy: an immutable value that decides, and never sleeps.

Modelled on urllib3's ``Retry``: the policy is told what happened on an attempt and the
time left before the call's deadline, and answers whether to try again and how long to
wait first. Randomness (jitter) is passed in, so a decision is a pure function of its
arguments and the tests need no clock and no sockets.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping

import attrs

from ..errors import TransportFailure

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Outcome:
    """What one attempt produced: a transport failure, or a status with its Retry-After."""

    failure: TransportFailure | None = None
    status: int | None = None
    #: seconds the server asked us to wait, already parsed (see :func:`parse_retry_after`)
    retry_after: float | None = None


@attrs.frozen
class Decision:
    """A policy's answer: retry after ``wait`` seconds, or stop (``retry`` is False)."""

    retry: bool
    wait: float = 0.0
    reason: str = ""


STOP = Decision(False)


@attrs.frozen
class RetryPolicy:
    """When to retry a call to another service, and how long to wait before each retry.

    ``total`` is the number of retries after the first attempt. Waits grow as
    ``backoff_factor * 2 ** (retry - 1)``, capped at ``backoff_max``, and are shortened
    by up to ``jitter`` (a fraction) so that many callers do not retry in step.
    """

    total: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    backoff_factor: float = attrs.field(default=0.05, validator=_non_negative)
    backoff_max: float = attrs.field(default=2.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
    status_forcelist: frozenset[int] = frozenset({502, 503, 504})
    #: statuses retried only when the server sends Retry-After
    retry_after_statuses: frozenset[int] = frozenset({429, 503})
    #: the longest Retry-After honoured; a longer one ends the call at once
    max_retry_after: float = attrs.field(default=30.0, validator=_non_negative)

    def backoff(self, retry_number: int, rand: float) -> float:
        """The wait before retry ``retry_number`` (1-based), given a uniform ``rand`` in [0, 1)."""
        base = min(self.backoff_max, self.backoff_factor * 2.0 ** (retry_number - 1))
        return base * (1.0 - self.jitter * rand)

    def is_retryable(self, method: str, outcome: Outcome, has_idempotency_key: bool) -> bool:
        """Whether this outcome may be retried at all, ignoring counts and time."""
        if outcome.failure in (TransportFailure.CONNECT, TransportFailure.NOT_SENT):
            return True  # no whole request reached the server
        if method not in IDEMPOTENT_METHODS and not has_idempotency_key:
            return False
        if outcome.failure is not None:
            return True
        status = outcome.status
        if status is None:
            return False
        if status in self.retry_after_statuses and outcome.retry_after is not None:
            return True
        return status in self.status_forcelist and status != 429

    def decide(
        self,
        *,
        method: str,
        outcome: Outcome,
        retries_done: int,
        remaining: float,
        has_idempotency_key: bool = False,
        rand: float = 0.0,
    ) -> Decision:
        """Retry or stop after an attempt that ended in ``outcome``.

        ``remaining`` is the time left before the call's deadline; a wait that would
        end past it is not taken, so no attempt starts that cannot finish in time.
        """
        if retries_done >= self.total:
            return STOP
        if not self.is_retryable(method, outcome, has_idempotency_key):
            return STOP
        if outcome.retry_after is not None and outcome.status in self.retry_after_statuses:
            if outcome.retry_after > self.max_retry_after:
                return STOP
            wait = outcome.retry_after
        else:
            wait = self.backoff(retries_done + 1, rand)
        if wait >= remaining:
            return STOP
        reason = outcome.failure.value if outcome.failure else f"status {outcome.status}"
        return Decision(True, wait, reason)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None.

    ``headers`` must have lower-case keys; ``now`` is the current Unix time, passed in
    so that an HTTP date can be turned into a delay without reading a clock here.
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
