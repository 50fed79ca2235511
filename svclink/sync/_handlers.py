"""Handler threads for a sync consumer with ``concurrency`` above one.

The consumer thread keeps the connection (pika's is not thread-safe) and hands each
message to one of ``concurrency`` daemon threads; a finished handler puts its outcome on
:attr:`HandlerThreads.done` and wakes the consumer thread, which settles the message. A
thread cannot be interrupted: a handler over its time limit is *abandoned* (its message
settled as failed by the consumer thread, its outcome ignored when it comes) and a new
thread takes its place, so the others keep their full concurrency. The threads are
daemons, so abandoned handlers never keep a stopping process alive.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.events.handling import Handle
from ._transport import Received


class Job:
    """One message handed to a handler thread: its handler ``step`` and how to ``call`` it."""

    def __init__(
        self, received: Received, step: Handle[Any], call: Callable[[Handle[Any]], BaseException | None]
    ) -> None:
        self.received = received
        self.step = step
        self.call = call
        self.started = time.monotonic()
        #: set by the consumer thread when it settled the message without waiting for the handler
        self.abandoned = False


class HandlerThreads:
    """Up to ``size`` handlers at once, each on a daemon thread of its own."""

    def __init__(self, size: int, wake: Callable[[], None], name: str) -> None:
        self._size, self._wake, self._name = size, wake, name
        self._work: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        #: (job, the exception its handler raised or None), as the handlers finish
        self.done: queue.SimpleQueue[tuple[Job, BaseException | None]] = queue.SimpleQueue()
        self._threads = 0  # started and not abandoned
        self._started: list[threading.Thread] = []

    def start(self, job: Job) -> None:
        """Run ``job`` on a free thread (the caller keeps at most ``size`` in flight)."""
        if self._threads < self._size:
            self._spawn()
        self._work.put(job)

    def abandon(self, job: Job) -> None:
        """Give up waiting for ``job``: its thread ends after the handler returns, a new one replaces it."""
        job.abandoned = True
        self._threads -= 1

    def _spawn(self) -> None:
        self._threads += 1
        thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        thread.start()
        self._started.append(thread)

    def _serve(self) -> None:
        while (job := self._work.get()) is not None:
            error = job.call(job.step)
            self.done.put((job, error))
            self._wake()
            if job.abandoned:
                return  # its place went to another thread

    def close(self) -> None:
        """Let the idle threads end (those still running a handler end when it returns)."""
        for thread in self._started:
            if thread.is_alive():
                self._work.put(None)
        self._threads, self._started = 0, []
