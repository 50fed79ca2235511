"""A lock that a forked child can always take.

``fork()`` copies a lock in whatever state it is in; if another thread of the parent
held it at that moment, the child (which has no such thread) would wait for it forever,
on its very first call. This lock notices that it is in a new process and starts over.
A fork bumps a generation counter (``os.register_at_fork``), which is far cheaper to
compare on every acquire than asking the kernel for the process id.
"""

from __future__ import annotations

import os
import threading

_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def generation() -> int:
    """How many forks lie between the first process and this one: what changes in a forked
    child, read without a system call (``os.getpid()`` is one)."""
    return _generation


class ForkSafeLock:
    """A ``threading.Lock`` for ``with`` blocks, renewed in each new process."""

    __slots__ = ("_generation", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = _generation

    def __enter__(self) -> None:
        if self._generation != _generation:
            self._lock, self._generation = threading.Lock(), _generation
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
