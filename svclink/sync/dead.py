"""The dead-letter queue of a consumer, for people: list, show, replay and purge (over pika).

Reading a queue takes messages without acknowledging them and gives back those it keeps,
so nothing is lost if the process dies midway: the broker puts back whatever its
connection held. A replayed message is acknowledged (removed from ``.dead``) only after
the broker has confirmed its copy. What a dead letter says and what its replay is are
decided in :mod:`svclink.core.events.dead`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from ..core.errors import EventError
from ..core.events.dead import BaseDeadLetters, DeadEvent, Selection, read, replay_message
from ..core.events.message import Delivery
from ._pika import core_properties, pika_properties
from ._pika_session import blocking_connection
from ._transport import Lost

__all__ = ["DeadEvent", "DeadLetters"]

#: visit(tag, delivery) -> whether to go on
_Visit = Callable[[Any, int, Delivery], bool]


class DeadLetters(BaseDeadLetters):
    """The dead letters of ``queue`` (a consumer's work queue, or its ``.dead`` queue)."""

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        try:
            connection = blocking_connection(self.settings, self._name)
        except Lost as exc:
            raise EventError(f"cannot reach the broker: {exc}") from None
        channel = connection.channel()
        try:
            channel.queue_declare(self.queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            connection.close()
            raise EventError(f"no dead-letter queue {self.queue!r}: {exc.reply_text}") from None
        return connection, channel

    def _browse(self, visit: _Visit, *, confirm: bool = False) -> None:
        """Take the messages one by one, unacknowledged, until ``visit`` says stop or none is left;
        then give back every one not acknowledged meanwhile."""
        connection, channel = self._channel()
        try:
            if confirm:
                channel.confirm_delivery()
            last = None
            while True:
                method, properties, body = channel.basic_get(self.queue, auto_ack=False)
                if method is None:
                    break
                last = method.delivery_tag
                delivery = Delivery(
                    body, core_properties(properties), method.exchange, method.routing_key, True
                )
                if not visit(channel, method.delivery_tag, delivery):
                    break
            if last is not None:
                channel.basic_nack(last, multiple=True, requeue=True)
        finally:
            if connection.is_open:
                connection.close()

    def list(self, limit: int | None = None) -> list[DeadEvent]:
        """The dead letters, oldest first (at most ``limit``); the queue is left as it was."""
        selection = Selection(limit=limit)
        found: list[DeadEvent] = []

        def visit(_channel: Any, _tag: int, delivery: Delivery) -> bool:
            found.append(read(delivery))
            return not selection.done(len(found))

        self._browse(visit)
        return found

    def show(self, event_id: str) -> DeadEvent | None:
        """The dead letter of ``event_id`` (headers and body), or None; the queue is left as it was."""
        found: builtins.list[DeadEvent] = []

        def visit(_channel: Any, _tag: int, delivery: Delivery) -> bool:
            dead = read(delivery)
            if dead.event_id == event_id:
                found.append(dead)
            return not found

        self._browse(visit)
        return found[0] if found else None

    def replay(self, event_id: str | None = None, *, limit: int | None = None) -> builtins.list[DeadEvent]:
        """Publish dead letters again to their original exchange and routing key, as first attempts.

        ``event_id`` picks one; without it every one is replayed (up to ``limit``). Each is
        removed from the dead-letter queue once the broker has confirmed its copy; one the
        broker returns (no queue bound) or refuses stays, and :class:`~svclink.EventError`
        says which, after the others are done. Returns the dead letters replayed.
        """
        selection = Selection(event_id=event_id, limit=limit)
        replayed: builtins.list[DeadEvent] = []
        failed: builtins.list[str] = []

        def visit(channel: Any, tag: int, delivery: Delivery) -> bool:
            dead = read(delivery)
            if selection.wants(dead):
                message = replay_message(delivery)
                try:
                    channel.basic_publish(
                        message.exchange, message.routing_key, message.body,
                        pika_properties(message.properties), mandatory=True,
                    )  # fmt: skip
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    failed.append(f"{dead.event_id}: {type(exc).__name__}")
                else:
                    channel.basic_ack(tag)
                    replayed.append(dead)
            return not selection.done(len(replayed))

        self._browse(visit, confirm=True)
        if failed:
            raise EventError(f"not replayed (left in {self.queue}): {', '.join(failed)}")
        return replayed

    def purge(self) -> int:
        """Delete every dead letter; the number deleted."""
        connection, channel = self._channel()
        try:
            return int(channel.queue_purge(self.queue).method.message_count)
        finally:
            connection.close()

    def count(self) -> int:
        """How many dead letters wait in the queue."""
        connection, channel = self._channel()
        try:
            return int(channel.queue_declare(self.queue, passive=True).method.message_count)
        finally:
            connection.close()
