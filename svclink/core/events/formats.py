"""Events in the layouts of a fleet's other services: any JSON object in, a flat layout out.

A team adopts svclink one service at a time, so its exchanges also carry what hand-written
aio-pika code, FastStream or kombu publish: a JSON object with the event's fields at the top
level, the type in a header, the body or only the routing key. A consumer reads those as
events (:func:`read_event`), with the type, id, time and request context taken from where
such publishers put them; ``strict`` consumers take svclink envelopes only. The flat layout
(:func:`flat_json`) is what the same hand-written consumers read: the data's own keys plus
``event_type``, ``event_id``, ``timestamp`` and ``service``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import InvalidEvent
from ..fleet_settings import PUBLISH_FORMATS
from ..settings import Settings
from .envelope import (
    ENVELOPE,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    FLAT,
    FOREIGN,
    VERSION_HEADER,
    Event,
    check_id,
    encode_json,
    from_envelope,
    load_json,
)
from .topics import check_event_type

if TYPE_CHECKING:  # message.py builds flat messages with this module
    from .message import Delivery

#: the header that marks a message svclink wrote in the flat layout (its data is the body less
#: :data:`FLAT_KEYS`)
FORMAT_HEADER = "x-svclink-format"


#: the keys the flat layout adds beside the data's own
FLAT_KEYS = ("event_type", "event_id", "timestamp", "service")


#: where a message retried or dead-lettered by svclink (sent on through the default exchange)
#: came from; read back so a retried foreign event keeps its type and id
ORIGINAL_EXCHANGE_HEADER = "x-svclink-original-exchange"


ORIGINAL_ROUTING_KEY_HEADER = "x-svclink-original-routing-key"


#: the envelope's own keys: a body with all of them is an envelope, whatever its headers say
_ENVELOPE_KEYS = frozenset(("version", "event_id", "event_type", "data"))


_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


#: the header hand-written consumers read the type from, beside svclink's own
FLAT_TYPE_HEADER = "event_type"


def publish_format(settings: Settings, exchange: str, chosen: object) -> str:
    """The layout of a publish to ``exchange``: ``chosen``, else the ``event_formats`` setting's
    for the exchange, else the envelope."""
    if chosen is None:
        return settings.event_formats.get(exchange, ENVELOPE)
    if chosen not in PUBLISH_FORMATS:
        raise InvalidEvent(
            f"format must be 'envelope' or 'flat' (or None for the event_formats setting), not {chosen!r}"
        )
    return str(chosen)


def flat_json(event_id: str, event_type: str, timestamp: str, source: str | None, data: object) -> bytes:
    """The flat layout's body: the data's own keys, plus ``event_type``, ``event_id``,
    ``timestamp`` and ``service``, as hand-written consumers read them.

    The data must be a JSON object without those four keys, so that a consumer that reads
    the flat layout back (svclink's, with :data:`FORMAT_HEADER`) gets the data unchanged.
    """
    if not isinstance(data, dict):
        raise InvalidEvent(
            f"with format='flat' the data must be a dict (its keys go at the top), not {type(data).__name__}"
        )
    taken = [key for key in FLAT_KEYS if key in data]
    if taken:
        names = ", ".join(map(repr, taken))
        raise InvalidEvent(
            f"with format='flat' the data must not have the keys {names}: the layout adds them"
        )
    doc = {"event_type": event_type, "event_id": event_id, **data, "timestamp": timestamp, "service": source}
    return encode_json(doc, data)


def read_event(delivery: Delivery, *, strict: bool, attempt: int, wall: float) -> Event:
    """The event a consumed message carries, or :class:`InvalidEvent` saying why there is none.

    Every message is read as an envelope when ``strict``, and so is one with svclink's version
    header; else one svclink wrote flat (its format header) as flat, a body with every
    envelope key as an envelope if it is a valid one, and any other JSON object as a foreign
    event. ``wall`` (epoch seconds) is the arrival time, the event's time when the message
    gives none.
    """
    doc = load_json(delivery.body)
    headers = delivery.properties.headers
    if strict or VERSION_HEADER in headers:
        return from_envelope(doc, attempt=attempt)
    flat = headers.get(FORMAT_HEADER) == FLAT
    if not flat and isinstance(doc, dict) and doc.keys() >= _ENVELOPE_KEYS:
        try:  # an envelope whose headers were lost on the way, most likely
            return from_envelope(doc, attempt=attempt)
        except InvalidEvent:  # a JSON object of another publisher's that only looks like one
            pass
    if not isinstance(doc, dict):
        kind = "null" if doc is None else _KINDS.get(type(doc), type(doc).__name__)
        raise InvalidEvent(f"message body is JSON but {kind}, not an object")
    key = original_routing_key(delivery)
    source = delivery.properties.app_id or _text(doc.get("service")) or _text(doc.get("source"))
    return Event(
        event_type=_event_type(headers, doc, key),
        data={k: v for k, v in doc.items() if k not in FLAT_KEYS} if flat else doc,
        event_id=_event_id(delivery, doc, key),
        occurred_at=_occurred_at(delivery.properties.timestamp, doc.get("timestamp"), wall),
        source=source,
        format=FLAT if flat else FOREIGN,
        attempt=attempt,
    )


def carried_id(delivery: Delivery) -> str | None:
    """The event id to give a copy of ``delivery`` that svclink moves to a delay or dead-letter
    queue, when the message has no ``message_id``: the id its event was read with, so that the
    copy's event keeps it (aio-pika gives a message without one a random id). None for a body
    that is not a JSON object."""
    try:
        doc = load_json(delivery.body)
    except InvalidEvent:
        return None
    return _event_id(delivery, doc, original_routing_key(delivery)) if isinstance(doc, dict) else None


def original_routing_key(delivery: Delivery) -> str:
    """The routing key the message was first published with (a retried copy carries it in a header)."""
    key = _text(delivery.properties.headers.get(ORIGINAL_ROUTING_KEY_HEADER))
    return delivery.routing_key if key is None else key


def _text(value: object) -> str | None:
    """``value`` if it is a string (a header pika could not decode as UTF-8 stays bytes: None)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _event_type(headers: Mapping[str, Any], doc: Mapping[str, Any], routing_key: str) -> str:
    """The type from the ``x-event-type`` header, an ``event_type`` header, the body, else the routing key."""
    candidates = (
        (f"header {EVENT_TYPE_HEADER!r}", headers.get(EVENT_TYPE_HEADER)),
        ("header 'event_type'", headers.get("event_type")),
        ("body field 'event_type'", doc.get("event_type")),
        ("routing key", routing_key),
    )
    where, value = next((w, v) for w, v in candidates if v is not None)
    try:
        return check_event_type(_text(value) if isinstance(value, bytes) else value)
    except InvalidEvent as exc:
        raise InvalidEvent(f"the event type in the {where}: {exc}") from None


def _event_id(delivery: Delivery, doc: Mapping[str, Any], routing_key: str) -> str:
    """The first well-formed id of: ``message_id``, the ``x-event-id`` or ``event_id`` header, the
    body's ``event_id`` or ``id`` (strings only); else a hash of the routing key and the body,
    the same for every copy of the message, so that deduplication works."""
    headers = delivery.properties.headers
    candidates = (
        delivery.properties.message_id,
        headers.get(EVENT_ID_HEADER),
        headers.get("event_id"),
        doc.get("event_id"),
        doc.get("id"),
    )
    for value in candidates:
        text = _text(value)
        if text is not None:
            try:
                return check_id("event_id", text)
            except InvalidEvent:
                continue
    digest = hashlib.sha256(routing_key.encode("utf-8") + b"\0" + delivery.body).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _occurred_at(stamp: int | None, body_time: object, wall: float) -> datetime:
    """The body's ``timestamp`` when it says its zone (ISO 8601 with an offset, or epoch
    seconds), else the AMQP timestamp (whole seconds), else the body's time without a zone
    read as UTC, else the arrival time ``wall``."""
    moment, zoned = _moment(body_time)
    if moment is not None and zoned:
        return moment
    if stamp is not None and (from_property := _moment(stamp)[0]) is not None:
        return from_property
    return moment if moment is not None else datetime.fromtimestamp(wall, UTC)


def _moment(value: object) -> tuple[datetime | None, bool]:
    """``value`` as a UTC time, if it is one, and whether it said its zone."""
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                return moment.replace(tzinfo=UTC), False
            return moment.astimezone(UTC), True
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return datetime.fromtimestamp(value, UTC), True
    except (ValueError, OverflowError, OSError):
        pass
    return None, False
