"""A whole-attempt deadline for blocking sockets, which only know per-read timeouts.

urllib3's read timeout bounds each ``recv``, so a server that trickles one byte just
inside it can hold a thread for hours. Every connection svclink's pool opens registers
itself, while a request is in flight, with one reaper thread per process; at the
attempt's deadline the reaper shuts the socket down, the blocked read returns, and the
call fails with ``ServiceTimeout`` at its deadline. The aio side gets the same from
``asyncio.timeout``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Attempt:
    """One attempt under a deadline; ``expired`` is set when the reaper had to cut it off."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.tokens: list[int] = []


class _Reaper:
    """Shuts down sockets whose deadline has passed; one thread, started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, HTTPConnection, Attempt]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._pid = 0

    def forked(self) -> None:
        """In a forked child: the reaper thread did not survive, and its lock may be held."""
        self._cond = threading.Condition()
        self._heap, self._live, self._pid = [], set(), 0

    def arm(self, attempt: Attempt, conn: HTTPConnection) -> int:
        with self._cond:
            if self._pid != os.getpid():  # first use in this process: start the thread
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="svclink-deadlines", daemon=True).start()
            token = next(self._ids)
            self._live.add(token)
            heapq.heappush(self._heap, (attempt.deadline, token, conn, attempt))
            if len(self._heap) > 64 + 4 * len(self._live):  # drop finished attempts: memory stays flat
                self._heap = [entry for entry in self._heap if entry[1] in self._live]
                heapq.heapify(self._heap)
            if self._heap[0][1] == token:
                self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token, conn, attempt = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                attempt.expired = True
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)


_reaper = _Reaper()
os.register_at_fork(after_in_child=_reaper.forked)
_local = threading.local()


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[Attempt]:
    """Bound everything svclink's connections do on this thread for ``seconds``.

    Whatever the block returns must be discarded when ``attempt.expired`` is set
    afterwards: a socket shut down mid-headers can look like a short, valid response.
    """
    attempt = _local.attempt = Attempt(time.monotonic() + seconds)
    try:
        yield attempt
    finally:
        _local.attempt = None
        for token in attempt.tokens:
            _reaper.disarm(token)


class _Armed:
    """Mixin: a connection that puts itself under the current attempt's deadline."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = getattr(_local, "attempt", None)
        if attempt is not None:
            attempt.tokens.append(_reaper.arm(attempt, self))  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Armed, HTTPConnection):
    pass


class _HTTPSConnection(_Armed, HTTPSConnection):
    pass


class _Bounded:
    """Mixin: waiting for a free pooled connection also ends at the attempt's deadline."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        attempt = getattr(_local, "attempt", None)
        if timeout is None and attempt is not None:
            timeout = max(0.001, attempt.deadline - time.monotonic())
        return super()._get_conn(timeout)  # type: ignore[misc]


class HTTPPool(_Bounded, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class HTTPSPool(_Bounded, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


POOL_CLASSES = {"http": HTTPPool, "https": HTTPSPool}
