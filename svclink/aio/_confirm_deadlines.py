"""Many deadlines on one event-loop timer.

Every publish waits for its confirm under a deadline. ``asyncio.timeout(seconds)`` makes
one loop timer per wait, scheduled and then cancelled; with 50 publishes in flight that
timer work cost more than the rest of svclink's publishing (``bench/run.py``: 283 us a
publish against 247 us without it). Here each wait enters ``asyncio.timeout(None)``,
which sets no timer but keeps asyncio's own cancel-and-raise-``TimeoutError`` logic,
and a single timer, set for the earliest deadline, expires the waits that are overdue.
Deadlines are ``time.monotonic()`` values, as everywhere in svclink.

The timer outlives the waits it was set for, and is never cancelled from outside: a
connection being closed still has waits in flight until the close fails them (aiormq
takes up to 2 s), and their deadlines must hold meanwhile. A timer that finds nothing
overdue and nothing waiting sets no other.
"""

from __future__ import annotations

import asyncio
import time


class Deadlines:
    """The deadlines of the waits in progress on one event loop, and the one timer that enforces them."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Timeout, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def add(self, timeout: asyncio.Timeout, deadline: float) -> None:
        """Expire ``timeout`` (an entered ``asyncio.timeout(None)``) at ``deadline``, unless discarded."""
        self._waiting[timeout] = deadline
        if self._timer is None or deadline < self._timer_at:
            self._schedule(deadline)

    def discard(self, timeout: asyncio.Timeout) -> None:
        """The wait under ``timeout`` is over; its deadline no longer matters."""
        self._waiting.pop(timeout, None)

    def _schedule(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), self._expire)

    def _expire(self) -> None:
        """Expire the overdue waits and set the timer for the next deadline; run by the timer."""
        self._timer = None
        now = time.monotonic()
        loop_now = asyncio.get_running_loop().time()
        for timeout, deadline in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[timeout]
                timeout.reschedule(loop_now)  # asyncio cancels the wait and raises TimeoutError in it
        if self._waiting:
            self._schedule(min(self._waiting.values()))
