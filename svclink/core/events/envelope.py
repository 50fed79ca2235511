"""The event and its JSON envelope: checked, encoded and decoded here once.

An event travels as a JSON envelope (the body); the body is the one source of truth when
decoding, and a body that is not a valid envelope raises :class:`InvalidEvent`, which a
consumer turns into an immediate dead-letter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from ..context.value import RequestContext, uuid4_hex
from ..errors import InvalidEvent
from .topics import check_event_type, utf8_size

#: the envelope layout this version writes; decoding accepts this version only
ENVELOPE_VERSION = 1


CONTENT_TYPE = "application/json"


#: the values of :attr:`Event.format`
ENVELOPE, FLAT, FOREIGN = "envelope", "flat", "foreign"


EVENT_TYPE_HEADER = "x-event-type"


EVENT_ID_HEADER = "x-event-id"


SOURCE_HEADER = "x-svclink-source"


VERSION_HEADER = "x-svclink-version"


_MAX_ID = 255


#: containers nested deeper than this in event data are refused (JSON encoders recurse)
MAX_DEPTH = 100


_MAX_CONTEXT_VALUE = 512


_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f]")


def new_event_id() -> str:
    """A fresh event id (a UUID4 string, as ``str(uuid.uuid4())``), unique enough to deduplicate on."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``, made once.

    ``json.dumps`` with options builds a new encoder on every call; this builds CPython's C
    encoder once (checked against ``json.dumps`` on a sample) and falls back to a reused
    ``JSONEncoder``. It keeps no circular-reference markers: event data is checked for
    depth (so for cycles) before it is encoded, and a marker table would be left dirty by
    a failed encoding.
    """
    options: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}
    encoder = json.JSONEncoder(check_circular=False, **options)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            # (markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan)
            strings = json.encoder.encode_basestring
            c_encode = make(None, encoder.default, strings, None, ":", ",", False, False, False)
            sample: dict[str, Any] = {"a": [1, 2.5, None, True, '\u00e9\n"', {}], "b": {"c": -0.0}}
            if "".join(c_encode(sample, 0)) == json.dumps(sample, **options):
                return lambda value: "".join(c_encode(value, 0))
        except Exception:  # an interpreter whose C encoder differs: the plain one is right, just slower
            pass
    return encoder.encode


_dumps = _json_encoder()


_quote: Callable[[str], str] = json.encoder.encode_basestring


def frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of ``value``; a read-only view is kept as it is, uncopied (svclink makes
    those over a dict it has just built, which nothing else holds)."""
    return value if type(value) is MappingProxyType else MappingProxyType(dict(value))


@attrs.frozen
class Event:
    """One event as a handler receives it (and as :meth:`Publisher.publish` returns it)."""

    event_type: str
    data: Any
    event_id: str
    #: when the event happened, timezone-aware UTC
    occurred_at: datetime
    #: the ``service_name`` of the publisher, if it had one
    source: str | None = None
    #: the publisher's request context (request id and trace), bound while a handler runs
    context: RequestContext | None = None
    version: int = ENVELOPE_VERSION
    #: the layout the message had: ``"envelope"`` (svclink's), ``"flat"`` (svclink's flat layout,
    #: :mod:`svclink.core.events.formats`) or ``"foreign"`` (any other JSON object)
    format: str = ENVELOPE
    #: the delivery attempt this is (1 on the first delivery, 2 on the first retry, ...)
    attempt: int = attrs.field(default=1, eq=False)
    #: as a publish returns it: False when no queue was bound for it (``unroutable="warn"``)
    routed: bool = attrs.field(default=True, eq=False)


def with_context(event: Event, context: RequestContext | None) -> Event:
    """``event`` with ``context`` in place of its own: ``attrs.evolve(event, context=context)``
    spelled out, because a consumer does it for every message, and evolve, which looks the
    class's fields up on each call, cost 2 us of the 15 us that reading a message takes
    (a test holds this to evolve for every field)."""
    return Event(
        event_type=event.event_type,
        data=event.data,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        source=event.source,
        context=context,
        version=event.version,
        format=event.format,
        attempt=event.attempt,
        routed=event.routed,
    )


def format_time(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 with a ``Z`` (microsecond precision)."""
    return format_utc(utc(moment))


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is refused (it would be read as this machine's local time)."""
    if moment.tzinfo is None:
        raise InvalidEvent("occurred_at must be timezone-aware")
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def format_utc(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidEvent("envelope field 'occurred_at' must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("envelope field 'occurred_at' is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidEvent("envelope field 'occurred_at' has no time zone")
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def check_id(what: str, value: object) -> str:
    """An id AMQP carries as a short string (``message_id``): at most 255 bytes of UTF-8."""
    if not isinstance(value, str) or not value or _UNSAFE_RE.search(value):
        raise InvalidEvent(f"{what} must be a non-empty string of printable characters")
    if len(value) > _MAX_ID or utf8_size(what, value) > _MAX_ID:
        raise InvalidEvent(f"{what} must be at most {_MAX_ID} bytes in UTF-8")
    return value


def check_json(data: object) -> None:
    """``data`` must be plain JSON: dicts with str keys, lists/tuples, str, int, finite float, bool, None."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:  # also ends a cycle, which would otherwise never end
            raise InvalidEvent(f"event data is nested deeper than {MAX_DEPTH} levels (or refers to itself)")
        if item is None or isinstance(item, (str, bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidEvent("event data must not contain NaN or infinity")
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise InvalidEvent("event data must have str keys only")
            stack.extend((v, depth + 1) for v in item.values())
        else:
            raise InvalidEvent(
                f"event data must be JSON (dict, list, str, number, bool, None), not {type(item).__name__}"
            )


_CONTAINERS = (dict, list, tuple)


def check_shape(data: object, depth: int = 0) -> None:
    """The part of :func:`check_json` the JSON encoder does not do: str keys, and depth (so cycles).

    It visits containers only; the encoder refuses every other non-JSON value and NaN.
    An item deeper than :data:`MAX_DEPTH` is refused, exactly as :func:`check_json` does.
    """
    if isinstance(data, dict):
        if depth >= MAX_DEPTH and data:  # its items would be deeper than MAX_DEPTH
            raise InvalidEvent(f"event data is nested deeper than {MAX_DEPTH} levels (or refers to itself)")
        for key, value in data.items():
            if type(key) is not str and not isinstance(key, str):
                raise InvalidEvent("event data must have str keys only")
            if isinstance(value, _CONTAINERS):
                check_shape(value, depth + 1)
    elif isinstance(data, (list, tuple)):
        if depth >= MAX_DEPTH and data:
            raise InvalidEvent(f"event data is nested deeper than {MAX_DEPTH} levels (or refers to itself)")
        for value in data:
            if isinstance(value, _CONTAINERS):
                check_shape(value, depth + 1)


def encode_json(document: dict[str, Any], data: object) -> bytes:
    """``document`` (which holds ``data``) as compact UTF-8 JSON, or the reason ``data`` cannot be."""
    try:
        return _dumps(document).encode("utf-8")  # a lone surrogate fails here, with a ValueError
    except (TypeError, ValueError, RecursionError) as exc:
        check_json(data)  # says precisely what is wrong, when it is the shape or a type
        raise InvalidEvent(f"event data is not JSON-serialisable: {exc}") from None


def envelope_json(
    event_id: str, event_type: str, occurred_at: str, source: str | None, context: dict[str, str], data: Any
) -> bytes:
    """The body of the message that carries an event: the envelope as compact UTF-8 JSON
    (``json.dumps(..., separators=(",", ":"), ensure_ascii=False, allow_nan=False)``, byte
    for byte), with only ``data`` through the encoder.

    The other fields are strings svclink has checked, quoted with the encoder's own
    string quoting; ``data`` may still turn out not to be JSON, which raises here.
    """
    try:
        text = _dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        check_json(data)  # says precisely what is wrong, when it is the shape or a type
        raise InvalidEvent(f"event data is not JSON-serialisable: {exc}") from None
    pairs = []
    for name, value in context.items():  # a loop, not a comprehension: this runs on every publish
        pairs.append(f'"{name}":{_quote(value)}')
    ctx = ",".join(pairs)
    who = "null" if source is None else _quote(source)
    head = f'{{"version":{ENVELOPE_VERSION},"event_id":{_quote(event_id)},"event_type":{_quote(event_type)},'
    doc = f'{head}"occurred_at":"{occurred_at}","source":{who},"context":{{{ctx}}},"data":{text}}}'
    try:
        return doc.encode("utf-8")
    except ValueError as exc:  # a lone surrogate, in data or in a context value
        raise InvalidEvent(f"event data is not JSON-serialisable: {exc}") from None


def check_context_value(name: str, value: str) -> None:
    if len(value) > _MAX_CONTEXT_VALUE or _UNSAFE_RE.search(value):
        raise InvalidEvent(f"envelope context field {name!r} must be a short printable string")
    utf8_size(f"envelope context field {name!r}", value)


def _parse_context(value: object) -> RequestContext | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent("envelope field 'context' must be an object")
    request_id = _context_value(value, "request_id")
    traceparent = _context_value(value, "traceparent")
    tracestate = _context_value(value, "tracestate")
    if request_id is None:
        return None
    return RequestContext(request_id=request_id, traceparent=traceparent, tracestate=tracestate)


def _context_value(context: dict[str, Any], name: str) -> str | None:
    item = context.get(name)
    if item is not None and (
        not isinstance(item, str) or len(item) > _MAX_CONTEXT_VALUE or _UNSAFE_RE.search(item)
    ):
        raise InvalidEvent(f"envelope context field {name!r} must be a short printable string")
    return item


def load_json(body: bytes) -> object:
    """The JSON document in a message body, or :class:`InvalidEvent` saying it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidEvent("message body is not UTF-8 JSON") from None


def decode(body: bytes, *, attempt: int = 1) -> Event:
    """The event in a message body, or :class:`InvalidEvent` saying what is wrong with it."""
    return from_envelope(load_json(body), attempt=attempt)


def from_envelope(doc: object, *, attempt: int = 1) -> Event:
    """The event in a decoded envelope, or :class:`InvalidEvent` saying what is wrong with it.

    Unknown envelope keys are ignored, so a newer publisher can add fields; a newer
    ``version`` is refused, since its meaning may have changed.
    """
    if not isinstance(doc, dict):
        raise InvalidEvent("message body is not a JSON object")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidEvent("envelope has no integer 'version'")
    if version != ENVELOPE_VERSION:
        raise InvalidEvent(f"envelope version {version} is not supported (expected {ENVELOPE_VERSION})")
    if "data" not in doc:
        raise InvalidEvent("envelope has no 'data'")
    source = doc.get("source")
    if source is not None and not isinstance(source, str):
        raise InvalidEvent("envelope field 'source' must be a string or null")
    try:
        event_type = check_event_type(doc.get("event_type"))
    except InvalidEvent as exc:
        raise InvalidEvent(f"envelope field 'event_type': {exc}") from None
    return Event(
        event_type=event_type,
        data=doc["data"],
        event_id=check_id("envelope field 'event_id'", doc.get("event_id")),
        occurred_at=_parse_time(doc.get("occurred_at")),
        source=source,
        context=_parse_context(doc.get("context")),
        version=version,
        attempt=attempt,
    )
