"""The AMQP message that carries an event: its properties, headers and delivery.

The properties and headers copy the event's type, id, source and request context, so
brokers' tools, shovels and non-Python consumers can see them without parsing the body.
:func:`prepare` builds the message of a publish; :func:`incoming_context` reads a
delivery's context back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from ..context.incoming import Incoming, read_incoming
from ..context.outgoing import (
    EVENTS_AUDIENCE,
    REQUEST_ID_HEADER,
    REQUEST_ID_LOWER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    message_headers,
)
from ..context.value import RequestContext
from ..errors import InvalidEvent
from ..settings import Settings
from .envelope import (
    CONTENT_TYPE,
    ENVELOPE_VERSION,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    FLAT,
    SOURCE_HEADER,
    VERSION_HEADER,
    Event,
    check_context_value,
    check_id,
    check_json,
    check_shape,
    envelope_json,
    format_utc,
    frozen_map,
    new_event_id,
    utc,
)
from .fieldtable import check_headers, encode_table
from .formats import FLAT_TYPE_HEADER, FORMAT_HEADER, flat_json, publish_format
from .topics import check_event_type, check_name


@attrs.frozen
class Properties:
    """The AMQP basic properties svclink reads and writes (messages are always persistent)."""

    headers: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map)
    message_id: str | None = None
    type: str | None = None
    app_id: str | None = None
    correlation_id: str | None = None
    #: seconds since the epoch, as AMQP carries it
    timestamp: int | None = None
    content_type: str | None = None
    #: the headers as the AMQP field table svclink encoded (:mod:`~svclink.core.events.fieldtable`),
    #: which the drivers send in place of their client's encoding; None for headers read from
    #: a delivery, which go back as the client decoded them
    table: bytes | None = attrs.field(default=None, eq=False, repr=False)

    def basic(self) -> dict[str, Any]:
        """The properties but the headers, by their AMQP names: pika's keywords and an outbox
        row's JSON alike, so that the list of fields is written once."""
        return {
            "message_id": self.message_id,
            "type": self.type,
            "app_id": self.app_id,
            "correlation_id": self.correlation_id,
            "timestamp": self.timestamp,
            "content_type": self.content_type,
        }


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


def check_size(settings: Settings, size: int) -> None:
    """A message body over the ``max_message_size`` setting is refused before it is sent.

    RabbitMQ closes the channel on a message over its own ``max_message_size`` (128 MiB
    unless configured), after the whole body has crossed the network.
    """
    if size > settings.max_message_size:
        raise InvalidEvent(
            f"the event is {size} bytes encoded, more than the max_message_size setting "
            f"({settings.max_message_size} bytes, the broker's limit)"
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
    layout: str | None = None,
) -> tuple[Event, OutgoingMessage]:
    """The event and the message for one publish, checked before any I/O.

    ``layout`` is ``"envelope"`` or ``"flat"`` (:func:`~svclink.core.events.formats.flat_json`);
    None means the ``event_formats`` setting's for the exchange.

    The request context bound now (or a fresh request id) travels in the envelope and,
    with the signed caller context, in the headers. ``occurred_at`` and ``wall`` are the
    driver's clock readings.

    Every argument is checked once (what svclink made itself, such as a fresh event id, is
    not checked again) and the body is encoded once.
    """
    exchange = check_name("exchange", settings.event_exchange if exchange is None else exchange)
    layout = publish_format(settings, exchange, layout)
    event_type = check_event_type(event_type)
    event_id = new_event_id() if event_id is None else check_id("event_id", event_id)
    moment = utc(occurred_at)
    try:
        check_shape(data)  # the encoder below refuses the rest of what is not JSON
    except RecursionError:
        check_json(data)
    user_headers = check_headers(headers)
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
        check_context_value(name, value)
    source = settings.service_name
    event = Event(
        event_type=event_type,
        data=data,
        event_id=event_id,
        occurred_at=moment,
        source=source,
        context=RequestContext(request_id=request_id, traceparent=traceparent, tracestate=tracestate),
        format=layout,
    )
    user_headers.update(ctx_headers)
    user_headers[EVENT_TYPE_HEADER] = event_type
    user_headers[EVENT_ID_HEADER] = event_id
    if layout == FLAT:
        body = flat_json(event_id, event_type, format_utc(moment), source, data)
        user_headers[FLAT_TYPE_HEADER] = event_type
        user_headers[FORMAT_HEADER] = FLAT
    else:
        body = envelope_json(event_id, event_type, format_utc(moment), source, fields, data)
        user_headers[VERSION_HEADER] = ENVELOPE_VERSION
    if source:
        user_headers[SOURCE_HEADER] = source
    check_size(settings, len(body))
    properties = Properties(
        headers=MappingProxyType(user_headers),
        table=encode_table(user_headers),
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
        lower[REQUEST_ID_LOWER] = context.request_id
        if context.traceparent:
            lower[TRACEPARENT_HEADER] = context.traceparent
        if context.tracestate:
            lower[TRACESTATE_HEADER] = context.tracestate
    for name, value in delivery.properties.headers.items():
        if isinstance(value, str):
            lower[name.lower()] = value
    return read_incoming(lower, settings=settings, now=now, wall=wall, audience=EVENTS_AUDIENCE)
