"""Many deadlines on one event-loop timer.

Every publish waits for its confirm under a deadline, and every handler of a consumer runs
under ``handler_timeout``. ``asyncio.timeout(seconds)`` makes
one loop timer per wait, scheduled and then cancelled; with 50 publishes in flight that
timer work cost more than the rest of svclink's publishing (``bench/run.py``: 283 us a
publish against 247 us without it). Here one timer, set for the earliest deadline,
expires the waits that are overdue.

A wait is a :class:`Wait`, a plain ``with`` block that does what ``asyncio.timeout``
does when it expires (cancel the task, then turn that cancellation, and only that one,
into ``TimeoutError``) without its per-wait machinery: even with no timer of its own,
``async with asyncio.timeout(None)`` cost 3.7 us a publish, most of what svclink's send
path added to aiormq's own publish (measured over a channel that answers at once).
Deadlines are ``time.monotonic()`` values, as everywhere in svclink.

The timer outlives the waits it was set for, and is never cancelled from outside: a
connection being closed still has waits in flight until the close fails them (aiormq
takes up to 2 s), and their deadlines must hold meanwhile. A timer that finds nothing
overdue and nothing waiting sets no other.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType


class Wait:
    """One task's wait under a deadline: ``with deadlines.wait(deadline): await ...``.

    At the deadline the task is cancelled; leaving the block turns that cancellation into
    ``TimeoutError``. A cancellation from anyone else stays a ``CancelledError``, even
    when both happen at once, as with ``asyncio.timeout``.
    """

    __slots__ = ("_cancelling", "_deadlines", "_expired", "_task", "deadline")

    def __init__(self, deadlines: Deadlines, deadline: float) -> None:
        self._deadlines = deadlines
        self.deadline = deadline
        self._expired = False

    def __enter__(self) -> Wait:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline can only be waited for inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._deadlines._add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._deadlines._waiting.pop(self, None)
        # this wait's own cancellation is taken back whatever ended the block, as asyncio.timeout does
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    @property
    def expired(self) -> bool:
        """The deadline passed while the task waited in the block (as ``Timeout.expired()``)."""
        return self._expired

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()


class Deadlines:
    """The deadlines of the waits in progress on one event loop, and the one timer that enforces them."""

    def __init__(self) -> None:
        self._waiting: dict[Wait, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def wait(self, deadline: float) -> Wait:
        """A ``with`` block that raises ``TimeoutError`` in the task waiting in it at ``deadline``."""
        return Wait(self, deadline)

    def _add(self, wait: Wait) -> None:
        self._waiting[wait] = None
        if self._timer is None or wait.deadline < self._timer_at:
            self._schedule(wait.deadline)

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
        for wait in [w for w in self._waiting if w.deadline <= now]:
            del self._waiting[wait]
            wait._expire()
        if self._waiting:
            self._schedule(min(w.deadline for w in self._waiting))
