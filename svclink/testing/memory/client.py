"""What svclink's sync and aio drivers do on the memory broker alike: declare a consumer's
topology and send a batch, with failures classified into the core's words."""

from __future__ import annotations

from collections.abc import Sequence

from ...core.events.broker import DeclareRefusal, Lost, declare_failed, publish_refused
from ...core.events.existing import refused_exchange, refused_queue
from ...core.events.message import OutgoingMessage
from ...core.events.topology import Binding, ExchangeSpec, QueueSpec, Topology, declarations
from .broker import MemoryBroker
from .model import Confirm, ConnectionClosed, MemoryBrokerError, MemoryConnection


def declare(broker: MemoryBroker, connection: MemoryConnection, topo: Topology) -> None:
    """Declare ``topo`` in the order of :func:`~svclink.core.events.topology.declarations`."""
    for step in declarations(topo):
        try:
            if isinstance(step, ExchangeSpec):
                broker.declare_exchange(connection, step.name, "topic")
            elif isinstance(step, Binding):
                broker.bind_queue(connection, step.queue, step.exchange, step.pattern)
            else:
                broker.declare_queue(connection, step.name, step.arguments, exclusive=step.exclusive)
        except ConnectionClosed as exc:
            raise Lost(str(exc)) from None
        except MemoryBrokerError as exc:
            refusal = DeclareRefusal.of(exc.code)
            if isinstance(step, ExchangeSpec):  # the memory broker has no durability: always an error
                raise refused_exchange(step.name, refusal, str(exc), consumer=True) or Lost(
                    str(exc)
                ) from None
            if isinstance(step, QueueSpec):
                raise refused_queue(step, refusal, str(exc)) from None
            raise declare_failed(refusal, str(exc)) from None


def send(
    broker: MemoryBroker, connection: MemoryConnection, messages: Sequence[OutgoingMessage]
) -> list[Confirm]:
    """Publish ``messages``, declaring their exchanges first; one confirm for each sent.

    Raises :class:`Lost` when the connection is closed before anything was sent.
    """
    if connection.closed:
        raise Lost(connection.close_reason or "closed")
    for exchange in {m.exchange for m in messages} - {""}:
        try:
            broker.declare_exchange(connection, exchange, "topic")
        except ConnectionClosed as exc:
            raise Lost(str(exc)) from None
        except MemoryBrokerError as exc:
            refused = refused_exchange(exchange, DeclareRefusal.of(exc.code), str(exc), consumer=False)
            raise refused or Lost(str(exc)) from None
    confirms: list[Confirm] = []
    try:
        for message in messages:
            confirms.append(broker.publish(connection, message))
    except ConnectionClosed as exc:
        if not confirms:
            raise Lost(str(exc)) from None
    except MemoryBrokerError as exc:
        raise publish_refused(str(exc)) from None
    return confirms
