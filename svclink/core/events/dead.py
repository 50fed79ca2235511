"""Dead letters read and replayed: what a dead-lettered message says, and the copy that replays it.

A consumer copies a message it gives up on to ``<queue>.dead`` with headers that say
why (:func:`~svclink.core.events.handling.dead_letter`). :class:`DeadEvent` reads them
back for ``svclink dead list`` and ``show``; :func:`replay_message` is the copy
``svclink dead replay`` publishes: to the original exchange and routing key, with the
same body, id and properties, and without svclink's attempt, error and dead-letter
headers, so the consumer handles it as a first attempt. The drivers browse the queue
(taking messages unacknowledged and giving back those they keep) and ack a dead
letter only once the broker has confirmed its replay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from ..errors import EventError, InvalidEvent
from ..settings import Settings, get_settings
from .broker import default_name, is_memory
from .envelope import EVENT_ID_HEADER, EVENT_TYPE_HEADER
from .formats import ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER
from .handling import (
    ATTEMPT_HEADER,
    DEAD_AT_HEADER,
    DEAD_REASON_HEADER,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    QUEUE_HEADER,
    attempt_of,
)
from .message import Delivery, OutgoingMessage
from .topics import check_name

#: svclink's own headers about one consumer's attempts, dropped from a replayed copy
_ATTEMPT_HEADERS = (
    ATTEMPT_HEADER, ERROR_HEADER, ERROR_TYPE_HEADER, DEAD_REASON_HEADER, DEAD_AT_HEADER, QUEUE_HEADER,
    ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER,
)  # fmt: skip
#: headers the broker writes when it dead-letters (from a delay queue)
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def dead_queue(queue: str) -> str:
    """The dead-letter queue of ``queue`` (given the work queue or the ``.dead`` queue itself)."""
    check_name("queue", queue)
    return queue if queue.endswith(".dead") else f"{queue}.dead"


class BaseDeadLetters:
    """What both sides' ``DeadLetters`` know before any I/O: the settings, the dead-letter queue
    and the connection's name; ``memory://`` is refused, its queues are the test broker's."""

    def __init__(self, queue: str, *, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if is_memory(self.settings):
            raise EventError("dead-letter tools need RabbitMQ; on memory:// read the test broker's queues")
        self.queue = dead_queue(queue)
        self._name = default_name(self.settings, f"dead:{self.queue}")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


@attrs.frozen
class DeadEvent:
    """One message in a dead-letter queue, as a person reads it."""

    event_id: str
    event_type: str
    #: why it was dead-lettered: max-attempts, undecodable, untrusted, not-json-object...
    reason: str
    #: the last error, ``Type: message``
    error: str
    #: the attempts made
    attempts: int
    #: when it was dead-lettered, if the consumer recorded it
    dead_lettered_at: datetime | None
    #: where it was published to, and where a replay sends it
    exchange: str
    routing_key: str
    headers: Mapping[str, Any]
    body: bytes

    def body_text(self) -> str:
        """The body, pretty-printed when it is JSON."""
        try:
            return json.dumps(json.loads(self.body), indent=2, ensure_ascii=False)
        except ValueError:
            return self.body.decode("utf-8", "replace")


def read(delivery: Delivery) -> DeadEvent:
    """What a dead-lettered ``delivery`` says about itself."""
    headers = delivery.properties.headers
    stamp = headers.get(DEAD_AT_HEADER)
    return DeadEvent(
        event_id=_text(delivery.properties.message_id or headers.get(EVENT_ID_HEADER)),
        event_type=_text(delivery.properties.type or headers.get(EVENT_TYPE_HEADER)),
        reason=_text(headers.get(DEAD_REASON_HEADER)),
        error=_text(headers.get(ERROR_HEADER)),
        attempts=attempt_of(delivery),
        dead_lettered_at=datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, (int, float)) else None,
        exchange=_text(headers.get(ORIGINAL_EXCHANGE_HEADER, delivery.exchange)),
        routing_key=_text(headers.get(ORIGINAL_ROUTING_KEY_HEADER, delivery.routing_key)),
        headers=MappingProxyType(dict(headers)),
        body=delivery.body,
    )


def replay_message(delivery: Delivery) -> OutgoingMessage:
    """The copy that replays a dead letter: where it was first published, as a first attempt."""
    dead = read(delivery)
    if not dead.routing_key and not dead.exchange:
        raise InvalidEvent(f"dead letter {dead.event_id or '(no id)'} does not say where it was published")
    headers = {
        k: v
        for k, v in delivery.properties.headers.items()
        if k not in _ATTEMPT_HEADERS and not k.startswith(_BROKER_HEADERS)
    }
    return OutgoingMessage(
        exchange=dead.exchange,
        routing_key=dead.routing_key,
        body=delivery.body,
        properties=attrs.evolve(delivery.properties, headers=headers, table=None),
        mandatory=True,
    )


@attrs.frozen
class Selection:
    """Which dead letters a replay takes: one ``event_id``, or all, up to ``limit``."""

    event_id: str | None = None
    limit: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)):
            raise InvalidEvent("limit must be a whole number")
        if self.limit is not None and self.limit < 1:
            raise InvalidEvent("limit must be at least 1")

    def wants(self, dead: DeadEvent) -> bool:
        return self.event_id is None or dead.event_id == self.event_id

    def done(self, taken: int) -> bool:
        """Whether no more are wanted after ``taken`` replayed."""
        if self.event_id is not None:
            return taken >= 1
        return self.limit is not None and taken >= self.limit
