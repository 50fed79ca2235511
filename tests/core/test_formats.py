"""Reading the events of a fleet's other services, without a broker: where type, id, time come from."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest

import svclink
from svclink.core.events.envelope import ENVELOPE, FOREIGN, Event
from svclink.core.events.existing import use_as_is, warn_existing
from svclink.core.events.formats import read_event
from svclink.core.events.handling import DeadLetter, Handle, HandlerTable, log_disposition, receive
from svclink.core.events.message import Delivery, Properties, prepare
from svclink.core.events.topology import ConsumerConfig
from svclink.core.settings import Settings

SETTINGS = Settings(service_name="notifications", amqp_url="memory://")
WALL = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
CONFIG = ConsumerConfig(queue="notif", exchange="user_events", bindings=["user.*"], retry_delays=[0.1])

#: what the team's hand-written publisher sends
BODY = {
    "event_type": "user.updated",
    "user_id": 5,
    "changes": {"name": "b"},
    "timestamp": "2025-03-01T10:00:00.250000",
    "service": "api_service",
}


def _delivery(
    body: Any = BODY,
    *,
    routing_key: str = "user.updated",
    headers: dict[str, Any] | None = None,
    **properties: Any,
) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(
        body=raw,
        properties=Properties(headers=headers or {}, **properties),
        exchange="user_events",
        routing_key=routing_key,
    )


def _read(delivery: Delivery, strict: bool = False) -> Event:
    return read_event(delivery, strict=strict, attempt=1, wall=WALL)


def test_a_flat_json_body_is_an_event_with_the_body_as_its_data() -> None:
    event = _read(_delivery(headers={"event_type": "user.updated", "user_id": 5}))
    assert event.format == FOREIGN
    assert event.event_type == "user.updated"
    assert event.data == BODY
    assert event.source == "api_service"
    assert event.occurred_at == datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)  # no zone: UTC


@pytest.mark.parametrize(
    ("headers", "body_type", "routing_key", "expected"),
    [
        ({"x-event-type": "a.first", "event_type": "b.second"}, "c.third", "d.fourth", "a.first"),
        ({"event_type": "b.second"}, "c.third", "d.fourth", "b.second"),
        ({"event_type": b"b.bytes"}, "c.third", "d.fourth", "b.bytes"),
        ({}, "c.third", "d.fourth", "c.third"),
        ({}, None, "d.fourth", "d.fourth"),
    ],
)
def test_the_type_comes_from_the_headers_then_the_body_then_the_routing_key(
    headers: dict[str, Any], body_type: str | None, routing_key: str, expected: str
) -> None:
    body = {"user_id": 5} if body_type is None else {"event_type": body_type, "user_id": 5}
    assert _read(_delivery(body, headers=headers, routing_key=routing_key)).event_type == expected


def test_a_retried_copy_keeps_the_type_and_id_of_its_first_routing_key() -> None:
    first = _read(_delivery({"user_id": 5}))
    moved = {"x-svclink-original-routing-key": "user.updated"}  # a copy back from a delay queue
    copy = _read(_delivery({"user_id": 5}, routing_key="notif", headers=moved))
    assert (copy.event_type, copy.event_id) == ("user.updated", first.event_id)


def test_a_bad_type_is_refused_naming_where_it_came_from() -> None:
    with pytest.raises(svclink.InvalidEvent, match=r"header 'event_type'.*wildcard"):
        _read(_delivery(headers={"event_type": "user.*"}))
    with pytest.raises(svclink.InvalidEvent, match=r"body field 'event_type'.*str"):
        _read(_delivery({"event_type": 7}))


@pytest.mark.parametrize(
    ("properties", "headers", "body", "expected"),
    [
        ({"message_id": "m-1"}, {"x-event-id": "h-1"}, {"event_id": "b-1", "id": "i-1"}, "m-1"),
        ({}, {"x-event-id": "h-1", "event_id": "h-2"}, {"event_id": "b-1"}, "h-1"),
        ({}, {"event_id": "h-2"}, {"event_id": "b-1", "id": "i-1"}, "h-2"),
        ({}, {}, {"event_id": "b-1", "id": "i-1"}, "b-1"),
        ({}, {}, {"id": "i-1"}, "i-1"),
        ({"message_id": "bad\nid"}, {}, {"id": "i-1"}, "i-1"),
    ],
)
def test_the_id_comes_from_the_message_id_then_headers_then_the_body(
    properties: dict[str, Any], headers: dict[str, Any], body: dict[str, Any], expected: str
) -> None:
    assert _read(_delivery(body, headers=headers, **properties)).event_id == expected


def test_without_an_id_the_id_is_a_hash_of_routing_key_and_body_the_same_for_every_copy() -> None:
    one = _read(_delivery({"user_id": 5, "id": 5}))  # an integer id is a record's, not the event's
    assert one.event_id == _read(_delivery({"user_id": 5, "id": 5})).event_id
    assert len(one.event_id) == 36 and one.event_id.count("-") == 4
    assert one.event_id != _read(_delivery({"user_id": 6, "id": 5})).event_id
    assert one.event_id != _read(_delivery({"user_id": 5, "id": 5}, routing_key="user.created")).event_id


@pytest.mark.parametrize(
    ("stamp", "body_time", "expected"),
    [
        (1_700_000_000, "2025-03-01T10:00:00.5Z", datetime(2025, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        (None, "2025-03-01T12:00:00+02:00", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        (1_700_000_000, 1_700_000_100.5, datetime.fromtimestamp(1_700_000_100.5, UTC)),
        (1_700_000_000, "2025-03-01T10:00:00", datetime.fromtimestamp(1_700_000_000, UTC)),
        (None, "2025-03-01T10:00:00", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        (1_700_000_000, "yesterday", datetime.fromtimestamp(1_700_000_000, UTC)),
        (None, "yesterday", datetime.fromtimestamp(WALL, UTC)),
        (None, None, datetime.fromtimestamp(WALL, UTC)),
    ],
)
def test_the_time_comes_from_a_zoned_body_time_then_the_property_then_a_naive_body_time(
    stamp: int | None, body_time: object, expected: datetime
) -> None:
    body = {"user_id": 5} if body_time is None else {"user_id": 5, "timestamp": body_time}
    assert _read(_delivery(body, timestamp=stamp)).occurred_at == expected


def test_an_svclink_envelope_is_read_as_one() -> None:
    event, message = prepare(
        SETTINGS,
        "user.updated",
        {"user_id": 5},
        exchange="x",
        event_id=None,
        occurred_at=datetime.now(UTC),
        wall=WALL,
    )
    got = _read(Delivery(message.body, message.properties, "x", "user.updated"))
    assert got.format == ENVELOPE and got.data == {"user_id": 5} and got.event_id == event.event_id
    bare = Delivery(message.body, Properties(), "x", "user.updated")  # headers lost on the way
    assert _read(bare).format == ENVELOPE


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\x00 not json", "not UTF-8 JSON"),
        (b"[1, 2]", "JSON but an array, not an object"),
        (b'"user.updated"', "JSON but a string, not an object"),
        (b"null", "JSON but null, not an object"),
        (b"[" * 100_000, "not UTF-8 JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object_says_so(body: bytes, says: str) -> None:
    with pytest.raises(svclink.InvalidEvent, match=says):
        _read(_delivery(body))


def test_strict_reads_envelopes_only() -> None:
    with pytest.raises(svclink.InvalidEvent, match="version"):
        _read(_delivery(), strict=True)


def test_a_consumer_hands_a_foreign_event_to_its_handler_and_a_strict_one_dead_letters_it() -> None:
    table: HandlerTable[str] = HandlerTable()
    table.add("user.updated", "h")
    delivery = _delivery(headers={"X-Request-ID": "req-from-api"})
    step = receive(delivery, CONFIG, table, SETTINGS, now=0.0, wall=WALL)
    assert isinstance(step, Handle) and step.event.data == BODY
    assert step.event.context is not None and step.event.context.request_id == "req-from-api"
    strict = ConsumerConfig(queue="notif", exchange="user_events", bindings=["user.*"], strict=True)
    dead = receive(delivery, strict, table, SETTINGS, now=0.0, wall=WALL)
    assert isinstance(dead, DeadLetter) and dead.reason == "undecodable"
    with pytest.raises(svclink.InvalidEvent, match="strict"):
        ConsumerConfig(queue="notif", exchange="user_events", bindings=["#"], strict="yes")  # type: ignore[arg-type]


def test_the_log_line_of_an_undecodable_message_names_its_routing_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivery = _delivery(b"<xml/>", routing_key="user.updated")
    step = receive(delivery, CONFIG, HandlerTable(), SETTINGS, now=0.0, wall=WALL)
    assert isinstance(step, DeadLetter)
    with caplog.at_level(logging.ERROR, "svclink.events"):
        log_disposition(CONFIG, delivery, step)
    line = caplog.records[0].getMessage()
    assert "message with routing key 'user.updated' and no id dead-lettered to notif.dead" in line
    assert "not UTF-8 JSON" in line and "None" not in line


def test_an_exchange_of_another_durability_is_used_as_it_is_another_type_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    durable = (
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'e' in vhost '/': "
        "received 'true' but current is 'false'"
    )
    assert use_as_is(durable)
    assert not use_as_is("PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'e' in vhost '/'")
    with caplog.at_level(logging.WARNING, "svclink.events"):
        warn_existing("test.formats.once", durable)
        warn_existing("test.formats.once", durable)
    assert len(caplog.records) == 1 and "'test.formats.once'" in caplog.records[0].getMessage()


# -- the fleet's settings and Insanic's request id header ----------------------------------


def test_fleet_settings_from_python_and_from_the_environment() -> None:
    from svclink.core.settings import load

    env = {
        "SVCLINK_EVENT_FORMATS": "user_events=flat, orders=envelope",
        "SVCLINK_TRANSIENT_EXCHANGES": "user_events,orders",
        "SVCLINK_INSANIC_HEADERS": "true",
    }
    loaded = load({}, env)
    assert dict(loaded.event_formats) == {"user_events": "flat", "orders": "envelope"}
    assert loaded.transient_exchanges == ("user_events", "orders")
    assert loaded.insanic_headers is True
    assert load({}, {}).insanic_headers is False and dict(load({}, {}).event_formats) == {}
    for field, value, says in [
        ("event_formats", {"user_events": "xml"}, "'flat' or 'envelope'"),
        ("event_formats", ["user_events"], "must map exchange names"),
        ("event_formats", {"amq.topic": "flat"}, "not amq"),
        ("transient_exchanges", "bad name!", "must name exchanges"),
        ("insanic_headers", "maybe", "true or false"),
    ]:
        with pytest.raises(svclink.ConfigurationError, match=rf"{field}.*{re.escape(says)}"):
            load({field: value}, {})


def test_the_request_id_of_an_insanic_caller_is_read_with_insanic_headers_only() -> None:
    from svclink.core.context.incoming import incoming

    headers = {"X-Insanic-Request-ID": "req-from-insanic"}
    on = Settings(service_name="api", insanic_headers=True)
    assert incoming(headers, settings=on, now=0.0, wall=WALL).context.request_id == "req-from-insanic"
    both = {**headers, "X-Request-ID": "req-standard"}
    assert incoming(both, settings=on, now=0.0, wall=WALL).context.request_id == "req-standard"
    assert incoming(headers, settings=SETTINGS, now=0.0, wall=WALL).context.request_id != "req-from-insanic"


# -- the flat layout out ------------------------------------------------------------------


def _flat(settings: Settings = SETTINGS, **kwargs: Any) -> tuple[Event, Any]:
    when = datetime(2025, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)
    kwargs.setdefault("layout", "flat")
    return prepare(
        settings, "user.updated", {"user_id": 5}, exchange="user_events", event_id="e-1", occurred_at=when,
        wall=WALL, **kwargs,
    )  # fmt: skip


def test_a_flat_message_has_the_datas_keys_at_the_top_and_the_type_in_a_header() -> None:
    event, message = _flat()
    assert json.loads(message.body) == {
        "event_type": "user.updated",
        "event_id": "e-1",
        "user_id": 5,
        "timestamp": "2025-03-01T10:00:00.250000Z",
        "service": "notifications",
    }
    headers = message.properties.headers
    assert headers["event_type"] == headers["x-event-type"] == "user.updated"
    assert headers["x-svclink-format"] == "flat" and "x-svclink-version" not in headers
    assert message.properties.message_id == "e-1" and "X-Request-ID" in headers
    assert event.format == "flat" and event.data == {"user_id": 5}
    back = _read(Delivery(message.body, message.properties, "user_events", "user.updated"))
    assert (back.format, back.data, back.event_id, back.occurred_at) == (
        "flat",
        {"user_id": 5},
        "e-1",
        event.occurred_at,
    )


def test_the_event_formats_setting_picks_the_layout_of_an_exchange() -> None:
    flat_exchange = Settings(service_name="api", event_formats={"user_events": "flat"})
    assert _flat(flat_exchange, layout=None)[0].format == "flat"
    assert _flat(flat_exchange, layout="envelope")[0].format == "envelope"
    assert _flat(SETTINGS, layout=None)[0].format == "envelope"


def test_flat_data_with_the_envelopes_keys_is_still_read_flat() -> None:
    data = {"version": 2, "data": {"a": 1}}  # the data's own keys, not an envelope's
    now = datetime.now(UTC)
    _, message = prepare(
        SETTINGS, "user.updated", data, exchange="x", event_id="e-2", occurred_at=now, wall=0.0, layout="flat"
    )
    back = _read(Delivery(message.body, message.properties, "x", "user.updated"))
    assert (back.format, back.data, back.event_id) == ("flat", data, "e-2")


def test_a_foreign_body_that_only_looks_like_an_envelope_is_a_foreign_event() -> None:
    body = {"version": 3, "event_id": "c-1", "event_type": "user.updated", "data": {"user_id": 5}}
    event = _read(_delivery(body))  # no svclink headers, not a valid envelope: another publisher's
    assert (event.format, event.event_id, event.data) == ("foreign", "c-1", body)
    with pytest.raises(svclink.InvalidEvent, match="version 3 is not supported"):  # svclink's own
        _read(_delivery(body, headers={"x-svclink-version": 3}))
