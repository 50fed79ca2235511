"""The dead-letter queue of a consumer, for people: the asyncio twin of :mod:`svclink.sync.dead`.

Same names, arguments and behaviour, awaited; over aio-pika's connection and the aiormq
channel beneath it, as the consumer uses them.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable

import aio_pika.abc
import aiormq
import aiormq.exceptions
from aiormq import spec

from ..core.errors import EventError
from ..core.events.dead import BaseDeadLetters, DeadEvent, Selection, read, replay_message
from ..core.events.message import Delivery
from ._pika import connect, core_delivery, publish, underlay_of
from ._transport import Lost

__all__ = ["DeadEvent", "DeadLetters"]

#: visit(channel, tag, delivery) -> whether to go on
_Visit = Callable[[aiormq.Channel, int, Delivery], Awaitable[bool]]


class DeadLetters(BaseDeadLetters):
    """The dead letters of ``queue`` (a consumer's work queue, or its ``.dead`` queue)."""

    async def _channel(self) -> tuple[aio_pika.abc.AbstractConnection, aiormq.Channel]:
        try:
            connection = await connect(self.settings, self._name)
        except Lost as exc:
            raise EventError(f"cannot reach the broker: {exc}") from None
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            underlay = await underlay_of(channel)
            await underlay.queue_declare(self.queue, passive=True)
        except aiormq.exceptions.ChannelClosed as exc:
            await connection.close()
            raise EventError(f"no dead-letter queue {self.queue!r}: {exc}") from None
        return connection, underlay

    async def _browse(self, visit: _Visit) -> None:
        """Take the messages one by one, unacknowledged, until ``visit`` says stop or none is left;
        then give back every one not acknowledged meanwhile."""
        connection, channel = await self._channel()
        try:
            last = None
            while True:
                message = await channel.basic_get(self.queue, no_ack=False)
                if isinstance(message.delivery, spec.Basic.GetEmpty):
                    break
                last = message.delivery_tag or 0
                if not await visit(channel, last, core_delivery(message)):
                    break
            if last is not None:
                await channel.basic_nack(last, multiple=True, requeue=True)
        finally:
            await connection.close()

    async def list(self, limit: int | None = None) -> builtins.list[DeadEvent]:
        """The dead letters, oldest first (at most ``limit``); the queue is left as it was."""
        selection = Selection(limit=limit)
        found: builtins.list[DeadEvent] = []

        async def visit(_channel: aiormq.Channel, _tag: int, delivery: Delivery) -> bool:
            found.append(read(delivery))
            return not selection.done(len(found))

        await self._browse(visit)
        return found

    async def show(self, event_id: str) -> DeadEvent | None:
        """The dead letter of ``event_id`` (headers and body), or None; the queue is left as it was."""
        found: builtins.list[DeadEvent] = []

        async def visit(_channel: aiormq.Channel, _tag: int, delivery: Delivery) -> bool:
            dead = read(delivery)
            if dead.event_id == event_id:
                found.append(dead)
            return not found

        await self._browse(visit)
        return found[0] if found else None

    async def replay(
        self, event_id: str | None = None, *, limit: int | None = None
    ) -> builtins.list[DeadEvent]:
        """As :meth:`svclink.sync.DeadLetters.replay`, awaited."""
        selection = Selection(event_id=event_id, limit=limit)
        replayed: builtins.list[DeadEvent] = []
        failed: builtins.list[str] = []

        async def visit(channel: aiormq.Channel, tag: int, delivery: Delivery) -> bool:
            dead = read(delivery)
            if selection.wants(dead):
                try:
                    await publish(channel, replay_message(delivery), 30)
                except (aiormq.exceptions.DeliveryError, TimeoutError) as exc:
                    failed.append(f"{dead.event_id}: {type(exc).__name__}")
                else:
                    await channel.basic_ack(tag)
                    replayed.append(dead)
            return not selection.done(len(replayed))

        await self._browse(visit)
        if failed:
            raise EventError(f"not replayed (left in {self.queue}): {', '.join(failed)}")
        return replayed

    async def purge(self) -> int:
        """Delete every dead letter; the number deleted."""
        connection, channel = await self._channel()
        try:
            return int((await channel.queue_purge(self.queue)).message_count or 0)
        finally:
            await connection.close()

    async def count(self) -> int:
        """How many dead letters wait in the queue."""
        connection, channel = await self._channel()
        try:
            return int((await channel.queue_declare(self.queue, passive=True)).message_count or 0)
        finally:
            await connection.close()
