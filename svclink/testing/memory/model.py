"""The memory broker's values and state: its errors, messages, deliveries, confirms and connections,
and the queues, exchanges and consumers it keeps."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ...core.events.message import Properties
from ...core.events.outcomes import Outcome

if TYPE_CHECKING:
    from .broker import MemoryBroker

EXCHANGE_TYPES = ("topic", "direct", "fanout")


class MemoryBrokerError(Exception):
    """What RabbitMQ would answer with a channel error: ``code`` is its reply code (404, 406...)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class ConnectionClosed(MemoryBrokerError):
    """The connection was closed (by the test, or by :meth:`MemoryBroker.close_connections`)."""

    def __init__(self, text: str = "connection closed") -> None:
        super().__init__(320, text)


@attrs.frozen
class MemoryMessage:
    """A message as stored: where it was published and what it carries."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Properties

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.headers


@attrs.frozen
class MemoryDelivery:
    """One delivery to a consumer."""

    consumer_tag: str
    delivery_tag: int
    message: MemoryMessage
    redelivered: bool


class Confirm:
    """The broker's answer to one publish: ``"ack"``, ``"nack"``, ``"returned"`` (then acked) or
    ``"closed"`` (the connection went away first); ``None`` while pending."""

    def __init__(self) -> None:
        self.outcome: str | None = None
        self._callbacks: list[Callable[[Confirm], None]] = []
        self._done = threading.Event()

    def _resolve(self, outcome: str) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        self._done.set()
        for callback in self._callbacks:
            callback(self)
        self._callbacks.clear()

    def add_done_callback(self, callback: Callable[[Confirm], None]) -> None:
        """Call ``callback(self)`` when resolved (at once if it already is)."""
        if self.outcome is not None:
            callback(self)
        else:
            self._callbacks.append(callback)

    def wait(self, timeout: float | None = None) -> str | None:
        """Block until resolved or ``timeout``; the outcome, or None if still pending."""
        self._done.wait(timeout)
        return self.outcome

    def result(self) -> Outcome | None:
        """The outcome as a publisher reports it (``"closed"`` is a connection lost); None while pending."""
        if self.outcome is None:
            return None
        return Outcome.LOST if self.outcome == "closed" else Outcome(self.outcome)


class MemoryConnection:
    """A client's connection to the broker; closing it requeues its consumers' unacked messages."""

    def __init__(self, broker: MemoryBroker, name: str) -> None:
        self.broker = broker
        self.name = name
        self.closed = False
        self.close_reason: str | None = None
        self._close_callbacks: list[Callable[[str], None]] = []

    def add_close_callback(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(reason)`` when the connection closes (at once if it is closed)."""
        with self.broker._lock:
            if self.closed:
                callback(self.close_reason or "closed")
            else:
                self._close_callbacks.append(callback)

    def close(self, reason: str = "closed by client") -> None:
        self.broker._close(self, reason)

    def check(self) -> None:
        if self.closed:
            raise ConnectionClosed(self.close_reason or "connection closed")


@attrs.define
class _Entry:
    message: MemoryMessage
    redelivered: bool = False
    deaths: int = 0


@attrs.define(eq=False)
class _Consumer:
    tag: str
    queue: _Queue
    connection: MemoryConnection
    prefetch: int
    callback: Callable[[MemoryDelivery], None]
    on_cancel: Callable[[], None] | None = None
    unacked: dict[int, _Entry] = attrs.field(factory=dict)
    tags: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))
    active: bool = True


@attrs.define(eq=False)
class _Queue:
    name: str
    arguments: Mapping[str, Any]
    ready: deque[_Entry] = attrs.field(factory=deque)
    consumers: list[_Consumer] = attrs.field(factory=list)
    turn: int = 0
    #: the connection an exclusive queue belongs to (None: not exclusive)
    owner: MemoryConnection | None = None

    def check_access(self, connection: MemoryConnection) -> None:
        if self.owner is not None and self.owner is not connection:
            raise MemoryBrokerError(
                405, f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue {self.name!r}"
            )

    @property
    def ttl(self) -> float | None:
        ttl = self.arguments.get("x-message-ttl")
        return None if ttl is None else float(ttl) / 1000.0


@attrs.define(eq=False)
class _Exchange:
    name: str
    type: str
    #: (queue name, binding key)
    bindings: list[tuple[str, str]] = attrs.field(factory=list)


class _Clock:
    """One daemon thread that runs callbacks at monotonic times (message TTLs)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_at(self, due: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), callback))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="svclink-memory-clock", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, _, callback = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            callback()
