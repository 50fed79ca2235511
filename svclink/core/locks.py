"""A lock that a forked child can always take.

``fork()`` copies a lock in whatever state it is in; if another thread of the parent
held it at that moment, the child (which has no such thread) would wait for it forever,
on its very first call. This lock notices that it is in a new process and starts over.
"""

from __future__ import annotations

import os
import threading


class ForkSafeLock:
    """A ``threading.Lock`` for ``with`` blocks, renewed in each new process."""

    __slots__ = ("_lock", "_pid")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __enter__(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._lock, self._pid = threading.Lock(), pid
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
