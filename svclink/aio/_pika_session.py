"""The aio consumer's connection to RabbitMQ: declares the topology, consumes, acks in few frames."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq
import aiormq.abc
import aiormq.exceptions

from ..core.errors import EventError
from ..core.events.acks import Acks
from ..core.events.broker import MOVE_TIMEOUT, declare_failed, move_failed, settle_failed
from ..core.events.existing import refused_queue
from ..core.events.handling import Ack, Disposition, republish
from ..core.events.message import Delivery
from ..core.events.stopping import StopWatch
from ..core.events.topology import Binding, ExchangeSpec, Topology, declarations
from ..core.settings import Settings
from ._pika import AMQP_LOST, connect, core_delivery, declare_refusal, ensure_exchange, publish, underlay_of
from ._transport import Lost, OnDelivery


class PikaSession:
    """One consumer connection: declares the topology, consumes, and acks in as few frames as it can.

    aiormq runs each delivery as a task, so up to ``prefetch`` handlers run at once. A
    finished message's ack waits one pass of the event loop, for the others finishing on
    the same pass to join it in one frame (see :mod:`svclink.core.events.acks`).
    """

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._settings, self._name, self._topo, self._prefetch = settings, name, topo, prefetch
        #: the longest the cancel and the close wait for the broker (a stop's bound)
        self._bound = StopWatch.of(settings).bound
        self.lost = asyncio.Event()
        #: why it was lost, as the broker or the client said (the first reason given)
        self.why = "connection lost"
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._underlay: aiormq.Channel | None = None
        self._tag: str | None = None
        self._acks = Acks(prefetch)
        self._acking = False  # a task is sending the acks of this pass of the loop

    def _on_close(self, *args: Any) -> None:
        reason = args[-1] if args else None
        if not self.lost.is_set() and isinstance(reason, BaseException):
            self.why = f"connection lost ({reason!r})"
        self.lost.set()

    async def start(self, on_delivery: OnDelivery) -> None:
        self._connection = await connect(self._settings, self._name)
        self._connection.close_callbacks.add(self._on_close)
        topo = self._topo
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            channel.close_callbacks.add(self._on_close)
            underlay = self._underlay = await underlay_of(channel)
            underlay.on_consumer_cancel_callbacks.add(self._on_close)  # the queue was deleted, say
            await channel.set_qos(prefetch_count=self._prefetch)
            await _declare(self._connection, self._settings, channel, topo)

            async def deliver(message: aiormq.abc.DeliveredMessage) -> None:
                tag = message.delivery_tag or 0
                self._acks.delivered(tag)  # before any await: tasks start in delivery order
                await on_delivery(core_delivery(message), tag)

            consuming = await underlay.basic_consume(topo.queue.name, deliver, no_ack=False)
            self._tag = consuming.consumer_tag
        except aiormq.exceptions.ChannelClosed as exc:
            await self.close()
            raise declare_failed(declare_refusal(exc), str(exc)) from None
        except AMQP_LOST as exc:
            await self.close()
            raise Lost(repr(exc)) from None
        except (EventError, Lost):  # a declaration refused, in core's words
            await self.close()
            raise

    async def finish(self, token: Any, delivery: Delivery, disposition: Disposition) -> None:
        """Carry out ``disposition``: republish a copy if it says so (confirmed), then ack.

        Any failure marks the session lost: the message stays unacked and is redelivered
        after the reconnect (which also declares a deleted delay or dead queue again).
        """
        tag: int = token
        underlay = self._underlay
        assert underlay is not None
        try:
            if not isinstance(disposition, Ack):
                copy = republish(delivery, disposition)
                try:
                    await publish(underlay, copy, MOVE_TIMEOUT)
                except (aiormq.exceptions.DeliveryError, TimeoutError) as exc:
                    await underlay.basic_nack(tag, requeue=True)
                    self._acks.settled(tag)  # only now: until the nack is out, no multiple ack may cover it
                    raise move_failed(copy.routing_key, repr(exc)) from None
            self._acks.finished(tag)
            if not self._acking:
                self._acking = True
                try:
                    await asyncio.sleep(0)  # the handlers finishing on this pass of the loop join in
                    await self._send_acks(underlay)
                finally:
                    self._acking = False
        except AMQP_LOST as exc:
            self.lost.set()
            raise settle_failed(repr(exc)) from None
        except Lost:
            self.lost.set()
            raise

    async def _send_acks(self, underlay: aiormq.Channel) -> None:
        while frames := self._acks.take():  # and those that finished while this one was sent
            for frame in frames:
                await underlay.basic_ack(frame.tag, multiple=frame.multiple)

    async def reject(self, token: Any) -> None:
        if self._underlay is not None:
            with contextlib.suppress(*AMQP_LOST):
                await self._underlay.basic_nack(token, requeue=True)
        self._acks.settled(token)  # only now: until the nack is out, no multiple ack may cover it

    async def stop_consuming(self) -> None:
        if self._underlay is not None and self._tag is not None and not self.lost.is_set():
            with contextlib.suppress(*AMQP_LOST, TimeoutError):
                await self._underlay.basic_cancel(self._tag, timeout=self._bound)

    async def close(self) -> None:
        """Close the connection, waiting at most the bound for the broker's answer (aiormq then
        closes the socket, and the broker puts the unacked messages back when it notices)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._bound):
                    await self._connection.close()


async def _declare(
    connection: aio_pika.abc.AbstractConnection,
    settings: Settings,
    channel: aio_pika.abc.AbstractChannel,
    topo: Topology,
) -> None:
    """Declare ``topo`` in the order of :func:`~svclink.core.events.topology.declarations`."""
    for step in declarations(topo):
        if isinstance(step, ExchangeSpec):
            await ensure_exchange(connection, settings, step.name, consumer=True)
        elif isinstance(step, Binding):
            queue = await channel.get_queue(step.queue, ensure=False)
            await queue.bind(step.exchange, routing_key=step.pattern)
        else:
            arguments = dict(step.arguments)
            try:
                await channel.declare_queue(
                    step.name, durable=not step.exclusive, exclusive=step.exclusive, arguments=arguments
                )
            except aiormq.exceptions.ChannelClosed as exc:
                detail = str(exc.args[1] if len(exc.args) > 1 else exc)
                raise refused_queue(step, declare_refusal(exc), detail) from None
