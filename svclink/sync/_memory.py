"""The sync side over the in-process ``memory://`` broker of :mod:`svclink.testing`."""

from __future__ import annotations

import contextlib
import os
import queue as queue_module
import threading
import time
from collections.abc import Callable, Sequence

from ..core.events.broker import MOVE_TIMEOUT, DeclareRefusal, declare_failed, move_failed
from ..core.events.handling import Ack, Disposition, republish
from ..core.events.message import Delivery, OutgoingMessage
from ..core.events.outcomes import Outcome
from ..core.events.topology import Topology
from ..core.settings import Settings
from ..testing import memory
from ..testing.memory.client import declare, send
from ._transport import Lost, Received


class MemoryLink:
    """The publisher's connection to the in-process broker."""

    #: the memory broker has no size limit: it never closes a channel on a message
    refusal = ""

    def __init__(self, settings: Settings, name: str) -> None:
        self.pid = os.getpid()
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._connection = self._broker.connect(name)

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[Outcome]:
        confirms = send(self._broker, self._connection, messages)
        outcomes = []
        for confirm in confirms:
            confirm.wait(max(0.0, deadline - time.monotonic()))
            outcomes.append(confirm.result() or Outcome.TIMED_OUT)
        return outcomes + [Outcome.LOST] * (len(messages) - len(confirms))

    def close(self) -> None:
        self._connection.close()


_LOST_SIGNAL = object()
_WAKE_SIGNAL = object()


class MemorySession:
    """A consumer on the in-process broker; handlers run on the consumer thread."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._connection = self._broker.connect(name)
        self._inbox: queue_module.SimpleQueue[object] = queue_module.SimpleQueue()
        b, c = self._broker, self._connection
        declare(b, c, topo)
        try:
            c.add_close_callback(lambda _reason: self._inbox.put(_LOST_SIGNAL))
            self._tag = b.consume(
                c,
                topo.queue.name,
                self._inbox.put,
                prefetch=prefetch,
                on_cancel=lambda: self._inbox.put(_LOST_SIGNAL),
            )
        except memory.ConnectionClosed as exc:
            raise Lost(str(exc)) from None
        except memory.MemoryBrokerError as exc:
            raise declare_failed(DeclareRefusal.of(exc.code), str(exc)) from None

    def next(self, timeout: float) -> Received | None:
        try:
            item = self._inbox.get(timeout=timeout)
        except queue_module.Empty:
            return None
        if item is _LOST_SIGNAL:
            raise Lost(self._connection.close_reason or "connection closed")
        if not isinstance(item, memory.MemoryDelivery):
            return None
        message = item.message
        delivery = Delivery(
            message.body, message.properties, message.exchange, message.routing_key, item.redelivered
        )
        return Received(delivery, item.delivery_tag)

    def run(
        self, fn: Callable[[], BaseException | None], limit: float, overdue: Callable[[], None]
    ) -> BaseException | None:
        timer = threading.Timer(limit, overdue)  # the broker is thread-safe: settle from the timer
        timer.daemon = True
        timer.start()
        try:
            return fn()
        finally:
            timer.cancel()

    def finish(self, received: Received, disposition: Disposition) -> None:
        b, c = self._broker, self._connection
        try:
            if not isinstance(disposition, Ack):
                confirm = b.publish(c, republish(received.delivery, disposition))
                confirm.wait(MOVE_TIMEOUT)
                outcome = confirm.result()
                if outcome is not Outcome.ACKED:
                    b.nack(c, self._tag, received.tag, requeue=True)
                    raise move_failed(disposition.queue, outcome.value if outcome else "no confirm in time")
            b.ack(c, self._tag, received.tag)
        except memory.MemoryBrokerError as exc:
            raise Lost(str(exc)) from None

    def reject(self, received: Received) -> None:
        with contextlib.suppress(memory.MemoryBrokerError):
            self._broker.nack(self._connection, self._tag, received.tag, requeue=True)

    def stop_consuming(self) -> None:
        self._broker.cancel(self._tag)

    def wake(self) -> None:
        self._inbox.put(_WAKE_SIGNAL)

    def close(self) -> None:
        self._connection.close()
