"""An in-process AMQP broker with RabbitMQ's routing, TTL and dead-lettering semantics.

``amqp_url="memory://"`` makes :mod:`svclink.sync` and :mod:`svclink.aio` publish to and
consume from this broker instead of RabbitMQ, so demos and unit tests need no server.
It is one object per process (per name: ``memory://other`` is a second broker), shared by
every thread and event loop, so a sync publisher and an aio consumer in one process talk
to each other.

What it models, because svclink relies on it: durable topic/direct/fanout exchanges and
the default exchange; topic matching exactly as RabbitMQ (:mod:`svclink.core.events.topics`);
``mandatory`` returns; publisher confirms (acks, and nacks from a full
``x-overflow=reject-publish`` queue); exclusive queues (deleted with the connection that
declared them, locked to other connections); consumers with prefetch, ack, nack and requeue;
per-queue ``x-message-ttl`` with ``x-dead-letter-exchange`` / ``x-dead-letter-routing-key``,
honoured by a timer thread (scaled by ``time_scale``); unacked messages requeued
(``redelivered``) when a connection closes. For fault tests it can close connections
(:meth:`MemoryBroker.close_connections`) and hold confirms like a blocked broker
(:meth:`MemoryBroker.block`).

Callbacks given to the broker (deliveries, confirms, connection closes) run on whatever
thread caused them, under the broker's lock: they must be quick and must not call back
into the broker (queue the work, as svclink's drivers do).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..core.events.message import OutgoingMessage, Properties
from ..core.events.topics import matches

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


class MemoryBroker:
    """The broker; get the shared one with :func:`get_broker` (what ``amqp_url="memory://"`` uses)."""

    def __init__(self, name: str = "", *, time_scale: float = 1.0) -> None:
        self.name = name
        #: multiply every TTL by this (e.g. 0.01 to run minutes of retry delays in a test)
        self.time_scale = time_scale
        self._lock = threading.RLock()
        self._exchanges: dict[str, _Exchange] = {"": _Exchange("", "direct")}
        self._queues: dict[str, _Queue] = {}
        self._connections: list[MemoryConnection] = []
        self._consumer_tags = itertools.count(1)
        self._blocked = False
        self._held: list[tuple[MemoryConnection, OutgoingMessage, Confirm]] = []
        self._clock = _Clock()

    # -- connections ---------------------------------------------------------------------

    def connect(self, name: str = "") -> MemoryConnection:
        connection = MemoryConnection(self, name)
        with self._lock:
            self._connections.append(connection)
        return connection

    def close_connections(self, name: str | None = None, reason: str = "closed by the broker") -> int:
        """Close every open connection (or those called ``name``), as ``rabbitmqctl close_connection``."""
        with self._lock:
            victims = [c for c in self._connections if name is None or c.name == name]
            for connection in victims:
                self._close(connection, reason)
        return len(victims)

    def connection_names(self) -> list[str]:
        with self._lock:
            return [c.name for c in self._connections]

    def _close(self, connection: MemoryConnection, reason: str) -> None:
        with self._lock:
            if connection.closed:
                return
            connection.closed = True
            connection.close_reason = reason
            if connection in self._connections:
                self._connections.remove(connection)
            for queue in self._queues.values():
                for consumer in [c for c in queue.consumers if c.connection is connection]:
                    self._drop_consumer(consumer)
            for name in [q.name for q in self._queues.values() if q.owner is connection]:
                self.delete_queue(name)
            for held in [h for h in self._held if h[0] is connection]:
                self._held.remove(held)
                held[2]._resolve("closed")
            callbacks, connection._close_callbacks = connection._close_callbacks, []
            for callback in callbacks:
                callback(reason)

    # -- topology ------------------------------------------------------------------------

    def declare_exchange(self, connection: MemoryConnection, name: str, type: str = "topic") -> None:
        if type not in EXCHANGE_TYPES:
            raise MemoryBrokerError(503, f"COMMAND_INVALID - unknown exchange type {type!r}")
        with self._lock:
            connection.check()
            existing = self._exchanges.get(name)
            if existing is None:
                self._exchanges[name] = _Exchange(name, type)
            elif existing.type != type:
                raise MemoryBrokerError(406, f"PRECONDITION_FAILED - exchange {name!r} is {existing.type}")

    def declare_queue(
        self,
        connection: MemoryConnection,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        exclusive: bool = False,
    ) -> None:
        """Declare queue ``name``; an ``exclusive`` one is deleted when ``connection`` closes."""
        args = MappingProxyType(dict(arguments or {}))
        with self._lock:
            connection.check()
            existing = self._queues.get(name)
            if existing is None:
                self._queues[name] = _Queue(name, args, owner=connection if exclusive else None)
                return
            existing.check_access(connection)
            if dict(existing.arguments) != dict(args):
                raise MemoryBrokerError(406, f"PRECONDITION_FAILED - queue {name!r} has other arguments")

    def bind(self, queue: str, exchange: str, pattern: str = "#") -> None:
        """Capture what is published to ``exchange`` with a routing key matching ``pattern`` in
        ``queue``, declaring both if need be (a durable queue, a topic exchange), with no
        consumer: a test reads them with :meth:`messages` or :meth:`get`.

        With the default exchange and ``svclink.events``, ``bind("seen", "svclink.events")``
        keeps a copy of every event published afterwards.
        """
        connection = self.connect("svclink-testing-bind")
        try:
            with self._lock:
                if exchange not in self._exchanges:
                    self.declare_exchange(connection, exchange, "topic")
                if queue not in self._queues:
                    self.declare_queue(connection, queue)
                self.bind_queue(connection, queue, exchange, pattern)
        finally:
            connection.close()

    def bind_queue(self, connection: MemoryConnection, queue: str, exchange: str, routing_key: str) -> None:
        """``queue.bind`` on ``connection``: both must exist, as on RabbitMQ."""
        with self._lock:
            connection.check()
            if queue not in self._queues:
                raise MemoryBrokerError(404, f"NOT_FOUND - no queue {queue!r}")
            if exchange not in self._exchanges or exchange == "":
                raise MemoryBrokerError(404, f"NOT_FOUND - no exchange {exchange!r}")
            bindings = self._exchanges[exchange].bindings
            if (queue, routing_key) not in bindings:
                bindings.append((queue, routing_key))

    def delete_queue(self, name: str) -> None:
        with self._lock:
            queue = self._queues.pop(name, None)
            if queue is None:
                return
            for consumer in list(queue.consumers):
                consumer.active = False
                if consumer.on_cancel is not None:  # RabbitMQ sends basic.cancel to the consumers
                    consumer.on_cancel()
            for exchange in self._exchanges.values():
                exchange.bindings = [b for b in exchange.bindings if b[0] != name]

    def delete_exchange(self, name: str) -> None:
        with self._lock:
            if name:
                self._exchanges.pop(name, None)

    def purge(self, name: str) -> int:
        with self._lock:
            queue = self._queue(name)
            count = len(queue.ready)
            queue.ready.clear()
            return count

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise MemoryBrokerError(404, f"NOT_FOUND - no queue {name!r}")
        return queue

    # -- publishing ----------------------------------------------------------------------

    def block(self) -> None:
        """Hold every publish unconfirmed, as a broker with a resource alarm does."""
        with self._lock:
            self._blocked = True

    def unblock(self) -> None:
        """Let held publishes through, in order."""
        with self._lock:
            self._blocked = False
            held, self._held = self._held, []
            for _connection, message, confirm in held:
                confirm._resolve(self._route(message))

    def publish(self, connection: MemoryConnection, message: OutgoingMessage) -> Confirm:
        """Publish with confirms; the returned :class:`Confirm` says what became of the message."""
        confirm = Confirm()
        with self._lock:
            connection.check()
            if message.exchange not in self._exchanges:
                raise MemoryBrokerError(404, f"NOT_FOUND - no exchange {message.exchange!r}")
            if self._blocked:
                self._held.append((connection, message, confirm))
            else:
                confirm._resolve(self._route(message))
        return confirm

    def _targets(self, exchange: str, routing_key: str) -> list[_Queue]:
        ex = self._exchanges.get(exchange)
        if ex is None:
            return []
        if ex.name == "":
            queue = self._queues.get(routing_key)
            return [queue] if queue is not None else []
        names: list[str] = []
        for queue_name, key in ex.bindings:
            hit = (
                ex.type == "fanout"
                or (ex.type == "direct" and key == routing_key)
                or (ex.type == "topic" and matches(key, routing_key))
            )
            if hit and queue_name not in names:
                names.append(queue_name)
        return [self._queues[n] for n in names if n in self._queues]

    def _route(self, message: OutgoingMessage) -> str:
        targets = self._targets(message.exchange, message.routing_key)
        if not targets:
            return "returned" if message.mandatory else "ack"
        stored = MemoryMessage(message.exchange, message.routing_key, message.body, message.properties)
        outcome = "ack"
        for queue in targets:
            if not self._enqueue(queue, _Entry(stored)):
                outcome = "nack"
        return outcome

    def _enqueue(self, queue: _Queue, entry: _Entry) -> bool:
        limit = queue.arguments.get("x-max-length")
        if limit is not None and len(queue.ready) >= int(limit):
            if queue.arguments.get("x-overflow") in ("reject-publish", "reject-publish-dlx"):
                return False
            if queue.ready:
                self._dead_letter(queue, queue.ready.popleft(), "maxlen")
            if int(limit) == 0:
                return True
        queue.ready.append(entry)
        ttl = queue.ttl
        if ttl is not None:
            self._clock.call_at(time.monotonic() + ttl * self.time_scale, lambda: self._expire(queue, entry))
        self._dispatch(queue)
        return True

    def _expire(self, queue: _Queue, entry: _Entry) -> None:
        with self._lock:
            if self._queues.get(queue.name) is not queue or entry not in queue.ready:
                return
            queue.ready.remove(entry)
            self._dead_letter(queue, entry, "expired")

    def _dead_letter(self, queue: _Queue, entry: _Entry, reason: str) -> None:
        """Republish to the queue's dead-letter exchange, as RabbitMQ does (with an ``x-death`` record)."""
        dlx = queue.arguments.get("x-dead-letter-exchange")
        if dlx is None:
            return
        old = entry.message
        key = queue.arguments.get("x-dead-letter-routing-key", old.routing_key)
        death = {
            "queue": queue.name,
            "reason": reason,
            "count": entry.deaths + 1,
            "exchange": old.exchange,
            "routing-keys": [old.routing_key],
        }
        headers = {**old.properties.headers, "x-death": [death]}
        moved = MemoryMessage(str(dlx), str(key), old.body, attrs.evolve(old.properties, headers=headers))
        for target in self._targets(moved.exchange, moved.routing_key):
            self._enqueue(target, _Entry(moved, deaths=entry.deaths + 1))

    # -- consuming -----------------------------------------------------------------------

    def consume(
        self,
        connection: MemoryConnection,
        queue: str,
        callback: Callable[[MemoryDelivery], None],
        *,
        prefetch: int = 0,
        on_cancel: Callable[[], None] | None = None,
    ) -> str:
        """Start a consumer; ``callback`` gets each :class:`MemoryDelivery` (quick, non-blocking).

        ``on_cancel`` is called if the broker cancels the consumer (its queue was deleted).
        """
        with self._lock:
            connection.check()
            target = self._queue(queue)
            target.check_access(connection)
            tag = f"memory-ctag-{next(self._consumer_tags)}"
            consumer = _Consumer(tag, target, connection, prefetch, callback, on_cancel)
            target.consumers.append(consumer)
            self._dispatch(target)
            return consumer.tag

    def cancel(self, consumer_tag: str) -> None:
        """Stop new deliveries; unacked ones stay with the consumer until acked or its connection closes."""
        with self._lock:
            for queue in self._queues.values():
                for consumer in queue.consumers:
                    if consumer.tag == consumer_tag:
                        consumer.active = False

    def _consumer(self, connection: MemoryConnection, consumer_tag: str) -> _Consumer:
        connection.check()
        for queue in self._queues.values():
            for consumer in queue.consumers:
                if consumer.tag == consumer_tag:
                    return consumer
        raise MemoryBrokerError(404, f"NOT_FOUND - no consumer {consumer_tag!r}")

    def ack(self, connection: MemoryConnection, consumer_tag: str, delivery_tag: int) -> None:
        with self._lock:
            consumer = self._consumer(connection, consumer_tag)
            if consumer.unacked.pop(delivery_tag, None) is None:
                raise MemoryBrokerError(406, f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}")
            self._settled(consumer)

    def nack(self, connection: MemoryConnection, consumer_tag: str, delivery_tag: int, requeue: bool) -> None:
        with self._lock:
            consumer = self._consumer(connection, consumer_tag)
            entry = consumer.unacked.pop(delivery_tag, None)
            if entry is None:
                raise MemoryBrokerError(406, f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}")
            if requeue:
                entry.redelivered = True
                consumer.queue.ready.appendleft(entry)
            else:
                self._dead_letter(consumer.queue, entry, "rejected")
            self._settled(consumer)

    def _settled(self, consumer: _Consumer) -> None:
        if not consumer.active and not consumer.unacked:
            self._remove_consumer(consumer)
        self._dispatch(consumer.queue)

    def _remove_consumer(self, consumer: _Consumer) -> None:
        if consumer in consumer.queue.consumers:
            consumer.queue.consumers.remove(consumer)

    def _drop_consumer(self, consumer: _Consumer) -> None:
        """The consumer's connection died: its unacked messages go back to the head of the queue."""
        consumer.active = False
        self._remove_consumer(consumer)
        for entry in reversed(list(consumer.unacked.values())):
            entry.redelivered = True
            consumer.queue.ready.appendleft(entry)
        consumer.unacked.clear()
        self._dispatch(consumer.queue)

    def _dispatch(self, queue: _Queue) -> None:
        """Hand ready messages to consumers with room, round-robin."""
        while queue.ready:
            ready = [
                c for c in queue.consumers if c.active and (not c.prefetch or len(c.unacked) < c.prefetch)
            ]
            if not ready or self._queues.get(queue.name) is not queue:
                return
            consumer = ready[queue.turn % len(ready)]
            queue.turn += 1
            entry = queue.ready.popleft()
            tag = next(consumer.tags)
            consumer.unacked[tag] = entry
            consumer.callback(MemoryDelivery(consumer.tag, tag, entry.message, entry.redelivered))

    # -- inspection (for tests) ----------------------------------------------------------

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


_brokers: dict[str, MemoryBroker] = {}
_brokers_lock = threading.Lock()


def broker_name(url: str) -> str:
    """``memory://`` is the default broker (name ``""``); ``memory://x`` is broker ``x``."""
    if not url.startswith("memory:"):
        raise ValueError(f"not a memory:// URL: {url!r}")
    return url[len("memory:") :].lstrip("/").rstrip("/")


def get_broker(url: str = "memory://") -> MemoryBroker:
    """The process's broker for ``url``, created on first use."""
    name = broker_name(url)
    with _brokers_lock:
        broker = _brokers.get(name)
        if broker is None:
            broker = _brokers[name] = MemoryBroker(name)
        return broker


def reset() -> None:
    """Forget every memory broker, closing their connections (between tests)."""
    with _brokers_lock:
        brokers = list(_brokers.values())
        _brokers.clear()
    for broker in brokers:
        broker.close_connections(reason="broker reset")
