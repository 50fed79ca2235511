"""The event envelope, its encoding, and the AMQP message that carries it.

An event travels as a JSON envelope (the body) plus AMQP properties and headers that copy
its type, id, source and request context, so brokers' tools, shovels and non-Python
consumers can see them without parsing the body. The body is the one source of truth
when decoding; a body that is not a valid envelope raises :class:`InvalidEvent`, which a
consumer turns into an immediate dead-letter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from .context import (
    EVENTS_AUDIENCE,
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    Incoming,
    RequestContext,
    message_headers,
    read_incoming,
    uuid4_hex,
)
from .errors import InvalidEvent, PublishError, PublishNacked, PublishTimeout, UnroutableError
from .settings import Settings
from .topics import check_event_type, check_name

#: the envelope layout this version writes; decoding accepts this version only
ENVELOPE_VERSION = 1
CONTENT_TYPE = "application/json"

EVENT_TYPE_HEADER = "x-event-type"
EVENT_ID_HEADER = "x-event-id"
SOURCE_HEADER = "x-svclink-source"
VERSION_HEADER = "x-svclink-version"

_MAX_ID = 255
#: containers nested deeper than this in event data are refused (JSON encoders recurse)
MAX_DEPTH = 100
_MAX_CONTEXT_VALUE = 512
_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f]")
#: the context fields that travel with an event; the deadline is a local monotonic time and
#: the caller and user need a signature, so neither is carried here
_CONTEXT_FIELDS = ("request_id", "traceparent", "tracestate")
_REQUEST_ID_LOWER = REQUEST_ID_HEADER.lower()


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


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
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
    #: the delivery attempt this is (1 on the first delivery, 2 on the first retry, ...)
    attempt: int = attrs.field(default=1, eq=False)


def format_time(moment: datetime) -> str:
    """``moment`` as UTC ISO 8601 with a ``Z`` (microsecond precision)."""
    return _format_utc(_utc(moment))


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive time is refused (it would be read as this machine's local time)."""
    if moment.tzinfo is None:
        raise InvalidEvent("occurred_at must be timezone-aware")
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def _format_utc(moment: datetime) -> str:
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


def _check_id(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or _UNSAFE_RE.search(value):
        raise InvalidEvent(f"{what} must be a non-empty string of at most {_MAX_ID} printable characters")
    return value


def _check_json(data: object) -> None:
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


def _check_shape(data: object, depth: int = 0) -> None:
    """The part of :func:`_check_json` the JSON encoder does not do: str keys, and depth (so cycles).

    It visits containers only; the encoder refuses every other non-JSON value and NaN.
    An item deeper than :data:`MAX_DEPTH` is refused, exactly as :func:`_check_json` does.
    """
    if isinstance(data, dict):
        if depth >= MAX_DEPTH and data:  # its items would be deeper than MAX_DEPTH
            raise InvalidEvent(f"event data is nested deeper than {MAX_DEPTH} levels (or refers to itself)")
        for key, value in data.items():
            if type(key) is not str and not isinstance(key, str):
                raise InvalidEvent("event data must have str keys only")
            if isinstance(value, _CONTAINERS):
                _check_shape(value, depth + 1)
    elif isinstance(data, (list, tuple)):
        if depth >= MAX_DEPTH and data:
            raise InvalidEvent(f"event data is nested deeper than {MAX_DEPTH} levels (or refers to itself)")
        for value in data:
            if isinstance(value, _CONTAINERS):
                _check_shape(value, depth + 1)


def _encode_json(document: dict[str, Any], data: object) -> bytes:
    """``document`` (which holds ``data``) as compact UTF-8 JSON, or the reason ``data`` cannot be."""
    try:
        return _dumps(document).encode("utf-8")  # a lone surrogate fails here, with a ValueError
    except (TypeError, ValueError, RecursionError) as exc:
        _check_json(data)  # says precisely what is wrong, when it is the shape or a type
        raise InvalidEvent(f"event data is not JSON-serialisable: {exc}") from None


def _envelope_json(
    event_id: str, event_type: str, occurred_at: str, source: str | None, context: dict[str, str], data: Any
) -> bytes:
    """The body :func:`encode` makes, byte for byte, but with only ``data`` through the encoder.

    The other fields are strings svclink has checked, quoted with the encoder's own
    string quoting; ``data`` may still turn out not to be JSON, which raises here.
    """
    try:
        text = _dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        _check_json(data)  # says precisely what is wrong, when it is the shape or a type
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


def _check_context_value(name: str, value: str) -> None:
    if len(value) > _MAX_CONTEXT_VALUE or _UNSAFE_RE.search(value):
        raise InvalidEvent(f"envelope context field {name!r} must be a short printable string")


def context_fields(context: RequestContext | None) -> dict[str, str]:
    """The part of a request context an event carries."""
    if context is None:
        return {}
    return {f: v for f in _CONTEXT_FIELDS if (v := getattr(context, f)) is not None}


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


def new_event(
    event_type: str,
    data: Any,
    *,
    event_id: str,
    occurred_at: datetime,
    source: str | None,
    context: RequestContext | None,
) -> Event:
    """A checked event, ready to encode; every argument problem raises :class:`InvalidEvent`."""
    check_event_type(event_type)
    _check_id("event_id", event_id)
    format_time(occurred_at)
    _check_json(data)
    if context is not None:
        _parse_context(context_fields(context))
    return Event(
        event_type=event_type,
        data=data,
        event_id=event_id,
        occurred_at=occurred_at.astimezone(UTC),
        source=source,
        context=context,
    )


def envelope(event: Event) -> dict[str, Any]:
    """The envelope of ``event`` as a JSON-ready dict."""
    return {
        "version": event.version,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": format_time(event.occurred_at),
        "source": event.source,
        "context": context_fields(event.context) or None,
        "data": event.data,
    }


def encode(event: Event) -> bytes:
    """The body of the message that carries ``event``: compact UTF-8 JSON."""
    return _encode_json(envelope(event), event.data)


def decode(body: bytes, *, attempt: int = 1) -> Event:
    """The event in a message body, or :class:`InvalidEvent` saying what is wrong with it.

    Unknown envelope keys are ignored, so a newer publisher can add fields; a newer
    ``version`` is refused, since its meaning may have changed.
    """
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidEvent("message body is not UTF-8 JSON") from None
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
        event_id=_check_id("envelope field 'event_id'", doc.get("event_id")),
        occurred_at=_parse_time(doc.get("occurred_at")),
        source=source,
        context=_parse_context(doc.get("context")),
        version=version,
        attempt=attempt,
    )


@attrs.frozen
class Properties:
    """The AMQP basic properties svclink reads and writes (messages are always persistent)."""

    headers: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_map)
    message_id: str | None = None
    type: str | None = None
    app_id: str | None = None
    correlation_id: str | None = None
    #: seconds since the epoch, as AMQP carries it
    timestamp: int | None = None
    content_type: str | None = None


@attrs.frozen
class OutgoingMessage:
    """One message to publish: where to, what, and with which properties."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Properties
    mandatory: bool = True


@attrs.frozen
class Delivery:
    """A message as a consumer received it, in the driver-neutral form the core reads."""

    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    redelivered: bool = False


def event_headers(event: Event) -> dict[str, Any]:
    """The AMQP headers that copy the envelope's type, id, version and source."""
    headers: dict[str, Any] = {
        EVENT_TYPE_HEADER: event.event_type,
        EVENT_ID_HEADER: event.event_id,
        VERSION_HEADER: event.version,
    }
    if event.source:
        headers[SOURCE_HEADER] = event.source
    return headers


def _check_header_value(name: str, value: object, depth: int = 0) -> None:
    """A header value AMQP can carry the same way from pika and aio-pika: JSON-like scalars and nesting."""
    if value is None or isinstance(value, (str, bytes, bool, int)):
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    if depth < 10 and isinstance(value, (list, tuple)):
        for item in value:
            _check_header_value(name, item, depth + 1)
        return
    if depth < 10 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for item in value.values():
            _check_header_value(name, item, depth + 1)
        return
    raise InvalidEvent(
        f"header {name!r} must be a str, bytes, number, bool, None, or a list or str-keyed dict of them"
    )


def _user_headers(extra_headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the caller's own headers, each checked."""
    if extra_headers is None:
        return {}
    if not isinstance(extra_headers, Mapping):
        raise InvalidEvent(f"headers must be a mapping, got {type(extra_headers).__name__}")
    headers = dict(extra_headers)
    for name, value in headers.items():
        if not isinstance(name, str) or not name or len(name) > 128:
            raise InvalidEvent("header names must be non-empty strings of at most 128 characters")
        _check_header_value(name, value)
    return headers


def outgoing(
    event: Event,
    exchange: str,
    context_headers: Mapping[str, str],
    extra_headers: Mapping[str, Any] | None = None,
) -> OutgoingMessage:
    """The message that publishes ``event`` to ``exchange`` with its type as the routing key.

    ``context_headers`` (request id, trace, signed caller context) and ``extra_headers``
    are added; neither may replace svclink's own event headers.
    """
    headers = _user_headers(extra_headers)
    headers.update(context_headers)
    headers.update(event_headers(event))
    return OutgoingMessage(
        exchange=exchange,
        routing_key=event.event_type,
        body=encode(event),
        properties=Properties(
            headers=headers,
            message_id=event.event_id,
            type=event.event_type,
            app_id=event.source,
            correlation_id=event.context.request_id if event.context else None,
            timestamp=int(event.occurred_at.timestamp()),
            content_type=CONTENT_TYPE,
        ),
    )


def prepare(
    settings: Settings,
    event_type: str,
    data: Any,
    *,
    exchange: str | None,
    event_id: str | None,
    occurred_at: datetime,
    wall: float,
    headers: Mapping[str, Any] | None = None,
) -> tuple[Event, OutgoingMessage]:
    """The event and the message for one publish, checked before any I/O.

    The request context bound now (or a fresh request id) travels in the envelope and,
    with the signed caller context, in the headers. ``occurred_at`` and ``wall`` are the
    driver's clock readings.

    This is :func:`new_event` then :func:`outgoing`, less the work they repeat: every
    argument is checked once (what svclink made itself, such as a fresh event id, is not
    checked again) and the body is encoded once.
    """
    exchange = check_name("exchange", settings.event_exchange if exchange is None else exchange)
    event_type = check_event_type(event_type)
    event_id = new_event_id() if event_id is None else _check_id("event_id", event_id)
    moment = _utc(occurred_at)
    try:
        _check_shape(data)  # the encoder below refuses the rest of what is not JSON
    except RecursionError:
        _check_json(data)
    user_headers = _user_headers(headers)
    ctx_headers = message_headers(settings, audience=EVENTS_AUDIENCE, wall=wall)
    request_id = ctx_headers[REQUEST_ID_HEADER]
    traceparent = ctx_headers.get(TRACEPARENT_HEADER)
    tracestate = ctx_headers.get(TRACESTATE_HEADER)
    fields = {"request_id": request_id}
    if traceparent is not None:
        fields["traceparent"] = traceparent
    if tracestate is not None:
        fields["tracestate"] = tracestate
    for name, value in fields.items():  # the bound context's own values (a fresh id is fine as it is)
        _check_context_value(name, value)
    source = settings.service_name
    event = Event(
        event_type=event_type,
        data=data,
        event_id=event_id,
        occurred_at=moment,
        source=source,
        context=RequestContext(request_id=request_id, traceparent=traceparent, tracestate=tracestate),
    )
    body = _envelope_json(event_id, event_type, _format_utc(moment), source, fields, data)
    user_headers.update(ctx_headers)
    user_headers[EVENT_TYPE_HEADER] = event_type
    user_headers[EVENT_ID_HEADER] = event_id
    user_headers[VERSION_HEADER] = ENVELOPE_VERSION
    if source:
        user_headers[SOURCE_HEADER] = source
    properties = Properties(
        headers=MappingProxyType(user_headers),
        message_id=event_id,
        type=event_type,
        app_id=source,
        correlation_id=request_id,
        timestamp=int(moment.timestamp()),
        content_type=CONTENT_TYPE,
    )
    return event, OutgoingMessage(exchange=exchange, routing_key=event_type, body=body, properties=properties)


def incoming_context(
    delivery: Delivery, event: Event, settings: Settings, *, now: float, wall: float
) -> Incoming:
    """The context to bind while ``event`` is handled, read from the message headers.

    The envelope's request id and trace fill in for a publisher that sent no headers; the
    caller and user come only from a signed context that verifies for events. A header
    replaces the envelope's value whatever the case of its name.
    """
    lower: dict[str, str] = {}
    context = event.context
    if context is not None:
        lower[_REQUEST_ID_LOWER] = context.request_id
        if context.traceparent:
            lower[TRACEPARENT_HEADER] = context.traceparent
        if context.tracestate:
            lower[TRACESTATE_HEADER] = context.tracestate
    for name, value in delivery.properties.headers.items():
        if isinstance(value, str):
            lower[name.lower()] = value
    return read_incoming(lower, settings=settings, now=now, wall=wall, audience=EVENTS_AUDIENCE)


#: what became of one published message, as a driver reports it
ACKED, NACKED, RETURNED, TIMED_OUT, LOST = "ack", "nack", "returned", "timeout", "lost"


def publish_error(outcome: str, message: OutgoingMessage, detail: str = "") -> PublishError | None:
    """The exception for a publish ``outcome`` (None when the broker confirmed it).

    ``LOST`` means the connection died after the message was written and before its
    confirm: it may or may not have landed, like a timeout.
    """
    if outcome == ACKED:
        return None
    where = f"exchange {message.exchange!r}, routing key {message.routing_key!r}"
    what = f"event {message.properties.message_id}" if message.properties.message_id else "message"
    extra = f" ({detail})" if detail else ""
    if outcome == RETURNED:
        return UnroutableError(f"{what} is unroutable: no queue is bound to {where}{extra}")
    if outcome == NACKED:
        return PublishNacked(f"the broker refused {what} on {where}{extra}")
    if outcome == TIMED_OUT:
        return PublishTimeout(
            f"no confirm for {what} on {where} in time{extra}; it may or may not have landed"
        )
    if outcome == LOST:
        return PublishError(f"connection lost before the confirm of {what} on {where}{extra}")
    return PublishError(f"{what} on {where} failed: {outcome}{extra}")


#: a batch is sent on at most this many connections: once, and again after a lost connection
SEND_ATTEMPTS = 2


@attrs.frozen
class Resolution:
    """What a publisher does with the outcomes of one send of a batch."""

    #: close the connection that sent it: it lost or never confirmed a message
    drop: bool
    #: positions in the batch to send again on a new connection (same event ids)
    retry: tuple[int, ...]
    #: positions settled now, with their final outcome (for :func:`publish_error`)
    final: tuple[tuple[int, str], ...]


def resolve(outcomes: Sequence[str], *, attempt: int, late: bool) -> Resolution:
    """Sort the outcomes of send ``attempt`` (1-based); ``late`` says the deadline has passed.

    A message lost with its connection is sent again once, if there is time; the resend
    may duplicate it (consumers deduplicate on the event id). Lost at the deadline, it is
    reported as a timeout: it may or may not have landed.
    """
    retry = []
    final = []
    for position, outcome in enumerate(outcomes):
        if outcome == LOST and attempt < SEND_ATTEMPTS and not late:
            retry.append(position)
        else:
            final.append((position, TIMED_OUT if outcome == LOST and late else outcome))
    drop = any(o in (LOST, TIMED_OUT) for o in outcomes)
    return Resolution(drop=drop, retry=tuple(retry), final=tuple(final))
