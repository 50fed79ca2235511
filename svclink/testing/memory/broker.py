"""The memory broker: routing, confirms, TTLs and dead-lettering, consumers with prefetch, as RabbitMQ."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ...core.events.message import OutgoingMessage
from ...core.events.topics import matches
from .inspection import Inspection
from .model import (
    EXCHANGE_TYPES,
    Confirm,
    MemoryBrokerError,
    MemoryConnection,
    MemoryDelivery,
    MemoryMessage,
    _Clock,
    _Consumer,
    _Entry,
    _Exchange,
    _Queue,
)


class MemoryBroker(Inspection):
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
                key = min(k for k in {*existing.arguments, *args} if existing.arguments.get(k) != args.get(k))
                raise MemoryBrokerError(
                    406,
                    f"PRECONDITION_FAILED - inequivalent arg {key!r} for queue {name!r}: "
                    f"received {args.get(key)!r} but current is {existing.arguments.get(key)!r}",
                )

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
