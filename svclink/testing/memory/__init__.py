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

import threading

from .broker import MemoryBroker
from .model import (
    EXCHANGE_TYPES,
    Confirm,
    ConnectionClosed,
    MemoryBrokerError,
    MemoryConnection,
    MemoryDelivery,
    MemoryMessage,
)

__all__ = [
    "EXCHANGE_TYPES",
    "Confirm",
    "ConnectionClosed",
    "MemoryBroker",
    "MemoryBrokerError",
    "MemoryConnection",
    "MemoryDelivery",
    "MemoryMessage",
    "broker_name",
    "get_broker",
    "reset",
]

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
