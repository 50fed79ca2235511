"""Whether a consumer is consuming now: what ``wait_ready()`` waits for, on both sides.

A consumer's ``run()`` reports each change (consuming; not any more; run ended) to its
:class:`Readiness`, which wakes whoever waits. How a waiter sleeps is each side's own (a
thread on an event, a task on its loop); when to stop waiting is decided here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ..errors import InvalidEvent


def check_wait(timeout: object) -> float | None:
    """A ``wait_ready`` timeout: None (no limit) or a non-negative number of seconds."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < math.inf:
        raise InvalidEvent("timeout must be a non-negative, finite number of seconds, or None")
    return float(timeout)


class Readiness:
    """A consumer's state as its runs report it, and the callbacks of those waiting for a change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._consuming = False
        self._failed = False  # the last run raised, and no run has started since
        self._runs_ended = 0
        self._watchers: list[Callable[[], None]] = []

    def run_started(self) -> None:
        with self._lock:
            self._failed = False

    def report(self, *, consuming: bool) -> None:
        """A run is consuming now, or is not any more (its connection was lost, or it is stopping)."""
        self._change(consuming=consuming)

    def run_ended(self, *, failed: bool) -> None:
        """A run returned (after ``stop()``) or raised (``failed``: a configuration error, say)."""
        self._change(consuming=False, ended=True, failed=failed)

    def _change(self, *, consuming: bool, ended: bool = False, failed: bool = False) -> None:
        with self._lock:
            self._consuming = consuming
            self._runs_ended += ended
            self._failed = self._failed or failed
            watchers = list(self._watchers)
        for wake in watchers:
            wake()

    @property
    def consuming(self) -> bool:
        return self._consuming

    def watch(self, wake: Callable[[], None]) -> int:
        """Call ``wake()`` on every change from now on; returns the mark :meth:`settled` takes."""
        with self._lock:
            self._watchers.append(wake)
            return self._runs_ended

    def unwatch(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._watchers.remove(wake)

    def settled(self, mark: int) -> bool:
        """Whether a waiter that started at ``mark`` is done: a run is consuming, a run ended
        since, or the last run raised (and none has started since: nothing will consume)."""
        with self._lock:
            return self._consuming or self._failed or self._runs_ended != mark
