"""A whole-attempt deadline for blocking sockets, which only know per-read timeouts.

urllib3's read timeout bounds each ``recv``, so a server that trickles one byte just
inside it can hold a thread for hours. Every connection svclink's pool opens registers
itself, while a request is in flight, with one reaper thread per process; at the
attempt's deadline the reaper shuts the socket down, the blocked read returns, and the
call fails with ``ServiceTimeout`` at its deadline. The aio side gets the same from
``asyncio.timeout``.

The reaper must never die: a dead one would leave every later call of the process
unbounded. It waits at most :data:`_LONGEST_WAIT` at a time (deadlines come clamped from
the core, but a wait is never handed a number the platform refuses), survives any error
in its loop, and is started again by the next attempt if its thread is gone all the same.

The connections also note what the driver must report when no response arrives:
whether the connection had carried an earlier request (``reused``) and whether the
request was written whole (``sent``); and a connection whose response the core says not
to keep (a 5xx) is closed as it goes back to the pool.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..core.http.attempts import keep_connection
from ..core.logs import logger

log = logger("svclink.http")

#: the longest single wait of the reaper; it looks at its heap again after it
_LONGEST_WAIT = 3600.0


class Attempt:
    """One attempt under a deadline, as a ``with`` block that bounds everything svclink's
    connections do on this thread meanwhile; ``expired`` is set when the reaper had to cut
    it off. Whatever the block returns must then be discarded: a socket shut down
    mid-headers can look like a short, valid response."""

    __slots__ = ("deadline", "expired", "reused", "sent", "tokens")

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.tokens: list[int] = []
        #: the connection used had carried an earlier request
        self.reused = False
        #: the request was written whole
        self.sent = False

    def __enter__(self) -> Attempt:
        _local.attempt = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _local.attempt = None
        for token in self.tokens:
            _reaper.disarm(token)


class _Reaper:
    """Shuts down sockets whose deadline has passed; one thread, started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, HTTPConnection, Attempt]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._new_lock()
        self._thread: threading.Thread | None = None

    def _new_lock(self) -> None:
        """The reaper's lock, taken directly by the calling threads (a C lock: the
        condition's own ``with`` is Python code on every attempt) and as the condition the
        reaper waits on."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def forked(self) -> None:
        """In a forked child: the reaper thread did not survive, and its lock may be held."""
        self._new_lock()
        self._heap, self._live, self._thread = [], set(), None

    def arm(self, attempt: Attempt, conn: HTTPConnection) -> int:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # first use, or it died
                self._thread = threading.Thread(target=self._run, name="svclink-deadlines", daemon=True)
                self._thread.start()
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
        with self._lock:
            self._live.discard(token)

    def _run(self) -> None:
        with self._cond:
            while True:
                try:
                    self._step()
                except Exception:  # never die: the next deadline must still be kept
                    log.exception("svclink's deadline reaper hit an error; it goes on")

    def _step(self) -> None:
        """Wait for the earliest deadline (or a new one), or cut off an attempt past its own."""
        while self._heap and self._heap[0][1] not in self._live:
            heapq.heappop(self._heap)
        if not self._heap:
            self._cond.wait()
            return
        deadline, token, conn, attempt = self._heap[0]
        delay = deadline - time.monotonic()
        if delay > 0:
            self._cond.wait(min(delay, _LONGEST_WAIT))
            return
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


class _Armed:
    """Mixin: a connection under the current attempt's deadline, which notes what happened."""

    #: requests sent on the current socket
    _sent_on_socket = 0
    #: the last response said this connection is not to be kept
    discard = False

    def connect(self) -> None:
        self._sent_on_socket = 0
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = getattr(_local, "attempt", None)
        if attempt is not None:
            attempt.tokens.append(_reaper.arm(attempt, self))  # type: ignore[arg-type]
            attempt.reused = getattr(self, "sock", None) is not None and self._sent_on_socket > 0
        super().request(*args, **kwargs)  # type: ignore[misc]
        # counted after: a new socket connects inside request(), which resets the count
        self._sent_on_socket += 1
        if attempt is not None:
            attempt.sent = True

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        self.discard = not keep_connection(response.status)
        return response


class _HTTPConnection(_Armed, HTTPConnection):
    pass


class _HTTPSConnection(_Armed, HTTPSConnection):
    pass


class _Bounded:
    """Mixin: waiting for a free pooled connection ends at the attempt's deadline, and a
    connection marked ``discard`` is closed before it is pooled again."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        attempt = getattr(_local, "attempt", None)
        if timeout is None and attempt is not None:
            timeout = max(0.001, attempt.deadline - time.monotonic())
        return super()._get_conn(timeout)  # type: ignore[misc]

    def _put_conn(self, conn: Any) -> None:
        """A connection the core said not to keep is closed first (it reconnects on next use)."""
        if getattr(conn, "discard", False):
            conn.discard = False
            conn.close()
        super()._put_conn(conn)  # type: ignore[misc]


class HTTPPool(_Bounded, HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class HTTPSPool(_Bounded, HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


POOL_CLASSES = {"http": HTTPPool, "https": HTTPSPool}
