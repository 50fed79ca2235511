"""What a test reads from the memory broker: which queues and exchanges exist, what they hold."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .model import MemoryBrokerError, MemoryMessage, _Exchange, _Queue


class Inspection:
    """The broker's read-only side, for assertions (a part of :class:`~svclink.testing.MemoryBroker`)."""

    _lock: threading.RLock
    _queues: dict[str, _Queue]
    _exchanges: dict[str, _Exchange]

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise MemoryBrokerError(404, f"NOT_FOUND - no queue {name!r}")
        return queue

    def queue_exists(self, name: str) -> bool:
        with self._lock:
            return name in self._queues

    def exchange_exists(self, name: str) -> bool:
        with self._lock:
            return name in self._exchanges

    def queue_arguments(self, name: str) -> Mapping[str, Any]:
        with self._lock:
            return self._queue(name).arguments

    def message_count(self, name: str) -> int:
        """Messages ready in queue ``name`` (not counting those delivered and unacked)."""
        with self._lock:
            return len(self._queue(name).ready)

    def consumer_count(self, name: str) -> int:
        """Consumers of queue ``name``; 0 for a queue not declared yet (its consumer is not
        consuming, the same answer as for a declared one)."""
        with self._lock:
            queue = self._queues.get(name)
            return 0 if queue is None else sum(1 for c in queue.consumers if c.active)

    def messages(self, name: str) -> list[MemoryMessage]:
        """The ready messages of queue ``name``, oldest first, left in place."""
        with self._lock:
            return [e.message for e in self._queue(name).ready]

    def get(self, name: str) -> MemoryMessage | None:
        """Take the oldest ready message of queue ``name`` (``basic.get`` with auto-ack)."""
        with self._lock:
            queue = self._queue(name)
            return queue.ready.popleft().message if queue.ready else None
