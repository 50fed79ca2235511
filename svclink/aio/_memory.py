"""The aio side over the in-process ``memory://`` broker of :mod:`svclink.testing`.

The broker calls back from whatever thread publishes; everything is handed to the
consumer's loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from ..core.events.broker import MOVE_TIMEOUT, DeclareRefusal, declare_failed, move_failed
from ..core.events.handling import Ack, Disposition, republish
from ..core.events.message import Delivery, OutgoingMessage
from ..core.events.outcomes import Outcome
from ..core.events.topology import Topology
from ..core.settings import Settings
from ..testing import memory
from ..testing.memory.client import declare, send
from ._transport import Lost, OnDelivery


def confirmed(confirm: memory.Confirm) -> asyncio.Future[Outcome]:
    """A future on the running loop for a memory-broker confirm (resolved from any thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Outcome] = loop.create_future()

    def resolve(done: memory.Confirm) -> None:
        def set_result() -> None:
            if not future.done():
                future.set_result(done.result() or Outcome.LOST)

        with contextlib.suppress(RuntimeError):  # the loop may be gone
            loop.call_soon_threadsafe(set_result)

    confirm.add_done_callback(resolve)
    return future


class MemoryLink:
    #: the memory broker has no size limit: it never closes a channel on a message
    refusal = ""

    def __init__(self, settings: Settings, name: str) -> None:
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._connection = self._broker.connect(name)

    async def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[Outcome]:
        futures = [confirmed(c) for c in send(self._broker, self._connection, messages)]
        outcomes = []
        for future in futures:
            try:
                outcome = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                outcome = Outcome.TIMED_OUT
            outcomes.append(outcome)
        return outcomes + [Outcome.LOST] * (len(messages) - len(futures))

    async def close(self) -> None:
        self._connection.close()


class MemorySession:
    """A consumer on the in-process broker; deliveries arrive from any thread via the loop."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._broker = memory.get_broker(settings.amqp_url[0])
        self._topo, self._prefetch, self._name = topo, prefetch, name
        self.lost = asyncio.Event()
        self.why = "connection lost"
        self._connection = self._broker.connect(name)
        self._tag = ""

    async def start(self, on_delivery: OnDelivery) -> None:
        loop = asyncio.get_running_loop()
        b, c, topo = self._broker, self._connection, self._topo
        tasks: set[asyncio.Task[None]] = set()

        def spawn(item: memory.MemoryDelivery) -> None:
            m = item.message
            delivery = Delivery(m.body, m.properties, m.exchange, m.routing_key, item.redelivered)
            task = loop.create_task(on_delivery(delivery, item.delivery_tag))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def from_broker(item: memory.MemoryDelivery) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(spawn, item)

        def closed(_reason: str) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.lost.set)

        declare(b, c, topo)
        try:
            c.add_close_callback(closed)
            self._tag = b.consume(
                c,
                topo.queue.name,
                from_broker,
                prefetch=self._prefetch,
                on_cancel=lambda: closed("cancelled"),
            )
        except memory.ConnectionClosed as exc:
            raise Lost(str(exc)) from None
        except memory.MemoryBrokerError as exc:
            raise declare_failed(DeclareRefusal.of(exc.code), str(exc)) from None

    async def finish(self, token: Any, delivery: Delivery, disposition: Disposition) -> None:
        b, c = self._broker, self._connection
        try:
            if not isinstance(disposition, Ack):
                future = confirmed(b.publish(c, republish(delivery, disposition)))
                try:
                    outcome: Outcome | None = await asyncio.wait_for(future, MOVE_TIMEOUT)
                except TimeoutError:
                    outcome = None
                if outcome is not Outcome.ACKED:
                    b.nack(c, self._tag, token, requeue=True)
                    self.lost.set()
                    raise move_failed(disposition.queue, outcome.value if outcome else "no confirm in time")
            b.ack(c, self._tag, token)
        except memory.MemoryBrokerError as exc:
            self.lost.set()
            raise Lost(str(exc)) from None

    async def reject(self, token: Any) -> None:
        with contextlib.suppress(memory.MemoryBrokerError):
            self._broker.nack(self._connection, self._tag, token, requeue=True)

    async def stop_consuming(self) -> None:
        self._broker.cancel(self._tag)

    async def close(self) -> None:
        self._connection.close()
