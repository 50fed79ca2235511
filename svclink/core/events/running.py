"""How a consumer is run and stopped: concurrency, handler time limits, the grace of a stop.

A stop has two steps. The first ``stop()`` (a SIGTERM to ``svclink worker``) starts a
*drain*: the consumer takes no more messages, gives those it has not started back to the
queue, and waits up to ``grace`` seconds for the handlers running to finish, acking each.
A second ``stop()``, or the grace running out, *abandons* the rest: the connection is
closed with their messages unacked, so the broker puts them back in the queue as they
were (the attempt count lives in a header svclink writes only on a retry, so none is
counted, and nothing is dead-lettered).

Everything here is a value or a pure function of an injected ``now``: the drivers read
the clock and act.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import HandlerTimeout, InvalidEvent


def handler_timeout_error(limit: float) -> HandlerTimeout:
    """The error a message's headers carry when its handler ran over ``limit`` seconds."""
    return HandlerTimeout(f"the handler ran longer than handler_timeout ({limit:g}s)")


def check_concurrency(value: object) -> int | None:
    """``concurrency`` checked: None (the side's default) or a whole number from 1 to 1000."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidEvent("concurrency must be a whole number from 1 to 1000")
    return value


def check_seconds(field: str, value: object) -> float:
    """A positive, finite number of seconds, else :class:`~svclink.InvalidEvent` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidEvent(f"{field} must be a positive number of seconds")
    return float(value)


def sized_prefetch(prefetch: int | None, default: int, concurrency: int | None) -> int:
    """The prefetch window for ``concurrency`` handlers: at least one message per handler.

    An explicit ``prefetch`` smaller than ``concurrency`` would leave handlers idle with
    messages waiting in the queue, so it is refused; without one, the ``prefetch_count``
    setting is raised to ``concurrency`` when it is smaller.
    """
    if prefetch is not None and concurrency is not None and prefetch < concurrency:
        raise InvalidEvent(
            f"prefetch ({prefetch}) must be at least concurrency ({concurrency}): "
            "each handler in flight holds one unacknowledged message"
        )
    if prefetch is not None:
        return prefetch
    return max(default, concurrency or 1)


class Phase(enum.Enum):
    """Where a consumer's run is on its way to a stop."""

    RUNNING = "running"
    #: taking no more messages; the handlers in flight are finishing within the grace
    DRAINING = "draining"
    #: the grace ran out or a second stop came: leave the rest to the broker
    ABANDONED = "abandoned"


@attrs.define
class Shutdown:
    """A run's stop requests, and the phase they put it in at a given moment.

    :meth:`request` is called by ``stop()`` from any thread; a driver asks :meth:`phase`
    with its own clock. The grace is counted from the first time a driver sees the
    request, which is at most one wait of its loop (half a second) after it was made.
    """

    grace: float
    _requests: int = attrs.field(default=0, init=False)
    _since: float | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def request(self) -> None:
        """One more stop: the first drains, the second abandons."""
        with self._lock:
            self._requests += 1

    @property
    def requested(self) -> bool:
        return self._requests > 0

    def phase(self, now: float) -> Phase:
        """The phase at ``now`` (starting the grace at the first call after a request)."""
        with self._lock:
            if not self._requests:
                return Phase.RUNNING
            if self._since is None:
                self._since = now
            if self._requests >= 2 or now >= self._since + self.grace:
                return Phase.ABANDONED
            return Phase.DRAINING

    def remaining(self, now: float) -> float:
        """Seconds of grace left at ``now`` (the whole grace before a stop is seen)."""
        since = self._since
        return self.grace if since is None else max(0.0, since + self.grace - now)

    def reset(self) -> None:
        """A run returned: the next one starts from nothing."""
        with self._lock:
            self._requests, self._since = 0, None


class State(enum.Enum):
    """What a consumer is doing, for a readiness probe and the logs."""

    #: not running, or returned
    STOPPED = "stopped"
    #: connecting and declaring
    STARTING = "starting"
    #: consuming: ready
    CONSUMING = "consuming"
    #: the connection was lost; reconnecting with backoff
    RECONNECTING = "reconnecting"
    #: stop() was called: finishing the handlers in flight
    DRAINING = "draining"


def overdue(started: float, limit: float, now: float) -> bool:
    """Whether a handler that started at ``started`` has run over ``limit`` seconds at ``now``."""
    return now - started >= limit


def explain_lost(reason: str) -> str:
    """A lost connection's reason as the log says it: the broker's ``consumer_timeout`` by name."""
    lowered = reason.lower()
    if "delivery acknowledgement" in lowered and "timed out" in lowered:
        return (
            "the broker closed the channel because a message stayed unacknowledged longer than "
            "its consumer_timeout (PRECONDITION_FAILED - delivery acknowledgement timed out): "
            f"set the consumer's handler_timeout below it ({reason})"
        )
    return reason


def probe(path: str, states: Mapping[str, State], responsive: bool) -> tuple[int, dict[str, Any]] | None:
    """The answer of a worker's health endpoint at ``path``: (status, JSON body), None for no such path.

    ``/livez``: the process and its event loops answer (200), else 503: a probe that fails
    it restarts the process. ``/readyz``: every consumer is connected and consuming (200),
    else 503 with each consumer's state: a probe that fails it only takes the process out
    of rotation while it reconnects or drains.
    """
    consumers = {queue: state.value for queue, state in states.items()}
    if path == "/livez":
        return (200 if responsive else 503), {"live": responsive}
    if path == "/readyz":
        ready = bool(states) and all(state is State.CONSUMING for state in states.values())
        return (200 if ready else 503), {"ready": ready, "consumers": consumers}
    return None


def exit_code(*, signals: int, in_time: bool, failed: bool) -> int:
    """A worker's exit status: 0 when every consumer drained within the grace after one signal;
    1 when a consumer failed, a second signal came, or the grace ran out with handlers running."""
    return 0 if not failed and signals <= 1 and in_time else 1
