"""The pure event core without a broker: topic matching, the envelope, dispatch and consumer decisions."""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import svclink
from svclink.core.context.value import bind
from svclink.core.events import handling, topics
from svclink.core.events.broker import Lost
from svclink.core.events.envelope import Event, decode, format_time, with_context
from svclink.core.events.handling import (
    Ack,
    DeadLetter,
    Delay,
    Handle,
    HandlerTable,
    receive,
    republish,
    settle,
)
from svclink.core.events.message import Delivery, Properties, prepare
from svclink.core.events.outcomes import Outcome, publish_error, resolve
from svclink.core.events.publishing import Sending, drops_connection, publish_deadline
from svclink.core.events.topology import Binding, ConsumerConfig, ExchangeSpec, declarations, topology
from svclink.core.settings import Settings, build

WHEN = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
SETTINGS = Settings(service_name="api", amqp_url="memory://")

# -- topic matching ----------------------------------------------------------------------

MATCHES = [
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),
    ("*.*", ".", True),
    ("", "", True),
    ("", "a", False),
    ("a", "a", True),
    ("a", "a.b", False),
    ("a.*", "a", False),
    ("a.*", "a.b", True),
    ("a.*", "a.", True),
    ("a.*", "a.b.c", False),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "x.a.y", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.b.b", True),
    ("a.#.b", "a", False),
    ("a.#.b", "a.x", False),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("#.*", "", False),
    ("#.*", "a", True),
    ("*.#", "a.b.c", True),
    ("#.*.#", "a", True),
    ("a..b", "a..b", True),
    ("a.*.b", "a..b", True),
    ("a.#.b", "a..b", True),
    ("..", "..", True),
    ("*.*.*", "..", True),
    ("a*", "ab", False),
    ("a*", "a*", True),
    ("a#", "a#", True),
    ("user.*", "user.updated", True),
    ("user.*", "users.updated", False),
    ("*.updated", "user.updated", True),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), MATCHES)
def test_topic_matching_table(pattern: str, key: str, expected: bool) -> None:
    assert topics.matches(pattern, key) is expected


def _reference(pattern: str, key: str) -> bool:
    """An independent matcher: a regex over the dot-joined words (RabbitMQ's split rule)."""
    pwords, kwords = topics.words(pattern), topics.words(key)
    parts = []
    for w in pwords:
        parts.append({"*": r"[^.]*\.", "#": r"(?:[^.]*\.)*"}.get(w, re.escape(w) + r"\."))
    return re.fullmatch("".join(parts), "".join(w + "." for w in kwords)) is not None


word = st.sampled_from(["a", "b", "", "ab"])
pattern_word = st.sampled_from(["a", "b", "", "*", "#", "ab"])


@given(st.lists(pattern_word, max_size=6), st.lists(word, max_size=6))
def test_topic_matching_agrees_with_a_regex_reference(pw: list[str], kw: list[str]) -> None:
    pattern, key = ".".join(pw), ".".join(kw)
    assert topics.matches(pattern, key) is _reference(pattern, key)


def test_many_hashes_stay_fast() -> None:
    assert topics.matches("#." * 40 + "z", "a." * 200 + "b") is False


@pytest.mark.parametrize("bad", ["", "user..updated", "user.*", "#", "a\nb", "x" * 256, 5, "user.", ".a"])
def test_bad_event_types_are_refused(bad: Any) -> None:
    with pytest.raises(svclink.InvalidEvent):
        topics.check_event_type(bad)


# -- the envelope ----------------------------------------------------------------------


def _prepared(**kwargs: Any) -> Any:
    values: dict[str, Any] = {"exchange": "ex", "event_id": None, "occurred_at": WHEN, "wall": 1.7e9}
    values.update(kwargs)
    return prepare(SETTINGS, "user.updated", {"id": 1, "tags": ["a"]}, **values)


def test_envelope_round_trip_keeps_every_field() -> None:
    with bind(request_id="req-1", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"):
        event, message = _prepared()
    decoded = decode(message.body)
    assert decoded == event
    assert decoded.occurred_at == WHEN and decoded.occurred_at.tzinfo is not None
    assert decoded.source == "api"
    assert decoded.context is not None and decoded.context.request_id == "req-1"
    assert decoded.context.traceparent is not None
    doc = json.loads(message.body)
    assert doc["version"] == 1
    assert doc["occurred_at"] == "2024-05-01T12:30:15.123456Z"
    assert set(doc) == {"version", "event_id", "event_type", "occurred_at", "source", "context", "data"}


def test_headers_and_properties_copy_type_id_and_context() -> None:
    with bind(request_id="req-2"):
        event, message = _prepared(headers={"x-custom": "1"})
    headers = message.properties.headers
    assert headers["x-event-type"] == "user.updated"
    assert headers["x-event-id"] == event.event_id
    assert headers["X-Request-ID"] == "req-2"
    assert headers["X-Svclink-Caller"] == "api"
    assert headers["x-custom"] == "1"
    assert message.routing_key == "user.updated" and message.exchange == "ex" and message.mandatory
    assert message.properties.message_id == event.event_id
    assert message.properties.content_type == "application/json"


def test_a_fresh_request_id_is_made_outside_any_context() -> None:
    event, message = _prepared()
    assert event.context is not None and len(event.context.request_id) >= 16
    assert message.properties.headers["X-Request-ID"] == event.context.request_id


def test_non_utc_time_is_converted() -> None:
    _, message = _prepared(occurred_at=WHEN.astimezone(timezone(timedelta(hours=5))))
    assert json.loads(message.body)["occurred_at"] == "2024-05-01T12:30:15.123456Z"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _envelope_json(event: Event) -> bytes:
    """The envelope of ``event`` through ``json.dumps``: what ``prepare`` writes, byte for byte."""
    ctx = event.context
    fields = ("request_id", "traceparent", "tracestate")
    context = {} if ctx is None else {f: v for f in fields if (v := getattr(ctx, f)) is not None}
    document = {
        "version": event.version,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": format_time(event.occurred_at),
        "source": event.source,
        "context": context or None,
        "data": event.data,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@given(data=_json_values, source=st.none() | st.from_regex(r"\A[a-z]([a-z0-9_-]{0,6}[a-z0-9])?\Z"))
def test_the_body_is_the_envelope_through_json_dumps_byte_for_byte(data: Any, source: str | None) -> None:
    """``prepare`` writes the envelope itself (only ``data`` goes through the encoder): it must
    be exactly what ``json.dumps`` makes of :func:`envelope`, and decode back to the event."""
    settings = build({"service_name": source, "amqp_url": "memory://"})
    with bind(request_id='r-\u00e9"1', traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"):
        event, message = prepare(
            settings, "user.updated", data, exchange="ex", event_id=None, occurred_at=WHEN, wall=1.0
        )
    assert message.body == _envelope_json(event)
    assert decode(message.body) == event


@pytest.mark.parametrize(
    "data", [{1: "int key"}, {"x": {1, 2}}, {"x": float("nan")}, {"when": datetime.now(UTC)}, object()]
)
def test_non_json_data_is_refused_before_io(data: Any) -> None:
    with pytest.raises(svclink.InvalidEvent):
        prepare(SETTINGS, "user.updated", data, exchange="ex", event_id=None, occurred_at=WHEN, wall=1.0)


def test_naive_time_and_bad_exchange_are_refused() -> None:
    with pytest.raises(svclink.InvalidEvent):
        _prepared(occurred_at=datetime(2024, 1, 1))
    with pytest.raises(svclink.InvalidEvent):
        _prepared(exchange="amq.topic")


def _body(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "version": 1,
        "event_id": "e1",
        "event_type": "user.updated",
        "occurred_at": "2024-05-01T12:30:15Z",
        "source": "api",
        "context": {"request_id": "r1"},
        "data": {},
    }
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"not json", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_body(version=...), "version"),
        (_body(version=2), "version 2 is not supported"),
        (_body(version=True), "version"),
        (_body(data=...), "'data'"),
        (_body(event_type="a.*"), "event_type"),
        (_body(event_id=""), "event_id"),
        (_body(occurred_at="yesterday"), "occurred_at"),
        (_body(occurred_at="2024-05-01T12:30:15"), "time zone"),
        (_body(source=5), "source"),
        (_body(context="r1"), "context"),
        (_body(context={"request_id": "a\nb"}), "request_id"),
    ],
)
def test_invalid_envelopes_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(svclink.InvalidEvent, match=re.escape(says)):
        decode(body)


def test_unknown_envelope_keys_are_ignored() -> None:
    assert decode(_body(extra="future field")).event_id == "e1"


# -- publish outcomes ----------------------------------------------------------------------


def test_publish_outcomes_map_to_the_error_hierarchy() -> None:
    _, message = _prepared()
    assert publish_error(Outcome.ACKED, message) is None
    assert isinstance(publish_error(Outcome.RETURNED, message), svclink.UnroutableError)
    assert isinstance(publish_error(Outcome.NACKED, message), svclink.PublishNacked)
    assert isinstance(publish_error(Outcome.TIMED_OUT, message), svclink.PublishTimeout)
    lost = publish_error(Outcome.LOST, message)
    assert isinstance(lost, svclink.PublishError) and "user.updated" in str(lost)


# -- dispatch ----------------------------------------------------------------------------


def test_handler_lookup_prefers_exact_then_patterns_in_order_then_default() -> None:
    table: HandlerTable[str] = HandlerTable()
    table.add("user.*", "pattern-user")
    table.add("user.created", "exact")
    table.add("*.created", "pattern-created")
    table.add("#", "default")
    assert table.find("user.created") == "exact"
    assert table.find("user.updated") == "pattern-user"
    assert table.find("order.created") == "pattern-created"
    assert table.find("order.paid") == "default"
    assert table.patterns() == ("#",)


def test_without_a_default_unknown_types_find_nothing() -> None:
    table: HandlerTable[str] = HandlerTable()
    table.add("user.updated", "h")
    table.add("order.#", "o")
    assert table.find("user.created") is None
    assert table.patterns() == ("user.updated", "order.#")
    with pytest.raises(ValueError, match="already registered"):
        table.add("user.updated", "again")


# -- consumer decisions ----------------------------------------------------------------------

CONFIG = ConsumerConfig(
    queue="notif", exchange="ex", bindings=["user.*"], max_attempts=3, retry_delays=[0.05, 0.2]
)


def _delivery(body: bytes | None = None, **headers: Any) -> Delivery:
    return Delivery(
        body=_body() if body is None else body,
        properties=Properties(headers=headers, message_id="e1"),
        exchange="ex",
        routing_key="user.updated",
    )


def _table() -> HandlerTable[str]:
    table: HandlerTable[str] = HandlerTable()
    table.add("user.updated", "h")
    return table


def test_a_good_message_is_handed_to_its_handler_with_the_publishers_request_id() -> None:
    step = receive(_delivery(), CONFIG, _table(), SETTINGS, now=0.0, wall=1.7e9)
    assert isinstance(step, Handle)
    assert step.handler == "h" and step.event.attempt == 1
    assert step.event.context is not None and step.event.context.request_id == "r1"


def test_an_undecodable_message_is_dead_lettered_at_once() -> None:
    step = receive(_delivery(b"garbage"), CONFIG, _table(), SETTINGS, now=0.0, wall=0.0)
    assert isinstance(step, DeadLetter)
    assert step.queue == "notif.dead" and step.reason == "undecodable"
    assert "not UTF-8 JSON" in step.headers["x-svclink-error"]


def test_an_unknown_type_is_acked_not_handled() -> None:
    step = receive(_delivery(_body(event_type="order.paid")), CONFIG, _table(), SETTINGS, now=0.0, wall=0.0)
    assert step == Ack(handled=False)


def test_strict_mode_dead_letters_an_unsigned_event() -> None:
    strict = Settings(service_name="api", signing_key="k" * 32, require_signed_context=True)
    step = receive(_delivery(), CONFIG, _table(), strict, now=0.0, wall=1.7e9)
    assert isinstance(step, DeadLetter) and step.reason == "untrusted"


def test_success_acks() -> None:
    assert settle(_delivery(), CONFIG, None) == Ack()


def test_failures_retry_with_the_delays_then_dead_letter() -> None:
    first = settle(_delivery(), CONFIG, RuntimeError("boom"))
    assert isinstance(first, Delay)
    assert (first.queue, first.delay, first.attempt) == ("notif.retry.50", 0.05, 2)
    assert first.headers["x-svclink-attempt"] == 2
    assert first.headers["x-svclink-error"] == "RuntimeError: boom"
    assert first.headers["x-svclink-original-routing-key"] == "user.updated"
    second = settle(_delivery(**first.headers), CONFIG, RuntimeError("boom"))
    assert isinstance(second, Delay) and second.queue == "notif.retry.200" and second.attempt == 3
    last = settle(_delivery(**second.headers), CONFIG, KeyError("k"))
    assert isinstance(last, DeadLetter)
    assert last.queue == "notif.dead" and last.reason == "max-attempts"
    assert last.headers["x-svclink-attempt"] == 3 and "KeyError" in last.headers["x-svclink-error"]


def test_the_last_delay_repeats_and_broker_headers_are_not_copied() -> None:
    config = ConsumerConfig(queue="q", exchange="ex", bindings=["#"], max_attempts=5, retry_delays=[1])
    step = settle(_delivery(**{"x-svclink-attempt": 4, "x-death": [{}]}), config, ValueError())
    assert isinstance(step, Delay) and step.queue == "q.retry.1000"
    assert "x-death" not in step.headers
    assert [q.name for q in topology(config).retry_queues] == ["q.retry.1000"]


def test_one_attempt_means_no_retry() -> None:
    config = ConsumerConfig(queue="q", exchange="ex", bindings=["#"], max_attempts=1, retry_delays=[])
    assert isinstance(settle(_delivery(), config, ValueError()), DeadLetter)
    assert topology(config).retry_queues == ()


def test_republish_keeps_body_and_properties_and_targets_the_queue() -> None:
    delivery = _delivery()
    decision = settle(delivery, CONFIG, RuntimeError("x"))
    assert isinstance(decision, Delay)
    message = republish(delivery, decision)
    assert message.exchange == "" and message.routing_key == "notif.retry.50"
    assert message.body == delivery.body and message.properties.message_id == "e1"


def test_topology_declares_delay_queues_that_dead_letter_back() -> None:
    topo = topology(attrs_evolve(CONFIG, queue_type="quorum"))
    assert topo.queue.arguments == {"x-queue-type": "quorum"}
    assert [q.name for q in topo.retry_queues] == ["notif.retry.50", "notif.retry.200"]
    assert dict(topo.retry_queues[0].arguments) == {
        "x-queue-type": "quorum",
        "x-message-ttl": 50,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "notif",
    }
    assert topo.dead_queue.name == "notif.dead"


def test_an_exclusive_topology_makes_every_queue_exclusive() -> None:
    topo = topology(attrs_evolve(CONFIG, exclusive=True))
    assert all(q.exclusive for q in (topo.queue, *topo.retry_queues, topo.dead_queue))
    assert not topology(CONFIG).queue.exclusive


def attrs_evolve(config: ConsumerConfig, **changes: Any) -> ConsumerConfig:
    import attrs

    return attrs.evolve(config, **changes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue": ""},
        {"queue": "amq.x"},
        {"bindings": []},
        {"bindings": "user.*"},
        {"max_attempts": 0},
        {"max_attempts": 3, "retry_delays": []},
        {"retry_delays": [-1]},
        {"prefetch": 0},
        {"queue_type": "stream"},
        {"queue_type": "quorum", "exclusive": True},
    ],
)
def test_bad_consumer_configs_are_refused(kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {"queue": "q", "exchange": "ex", "bindings": ["#"]}
    values.update(kwargs)
    with pytest.raises(svclink.InvalidEvent):
        ConsumerConfig(**values)


def test_reconnect_backoff_grows_and_is_capped() -> None:
    delays = [handling.reconnect_delay(n) for n in range(1, 10)]
    assert delays[0] == 0.1 and delays == sorted(delays) and max(delays) == 5.0


def test_lost_messages_are_resent_once_then_reported() -> None:
    from svclink.core.events.outcomes import resolve

    first = resolve([Outcome.ACKED, Outcome.LOST, Outcome.RETURNED, Outcome.LOST], attempt=1, late=False)
    assert first.drop and first.retry == (1, 3)
    assert first.final == ((0, Outcome.ACKED), (2, Outcome.RETURNED))
    again = resolve([Outcome.LOST], attempt=2, late=False)
    assert again.retry == () and again.final == ((0, Outcome.LOST),)
    late = resolve([Outcome.LOST, Outcome.TIMED_OUT], attempt=1, late=True)
    assert late.retry == () and late.final == ((0, Outcome.TIMED_OUT), (1, Outcome.TIMED_OUT))
    assert not resolve([Outcome.ACKED, Outcome.NACKED], attempt=1, late=False).drop


def test_a_channel_the_broker_closed_on_a_message_is_refused_not_resent() -> None:
    from svclink.core.events.outcomes import channel_closed, resolve

    assert channel_closed(406) is Outcome.REFUSED  # PRECONDITION_FAILED: the message itself
    assert channel_closed(None) is Outcome.LOST and channel_closed(320) is Outcome.LOST
    step = resolve([Outcome.ACKED, Outcome.REFUSED], attempt=1, late=False)
    assert step.drop and step.retry == () and step.final == ((0, Outcome.ACKED), (1, Outcome.REFUSED))
    sending = Sending([_prepared()], deadline=100.0)
    reason = "PRECONDITION_FAILED - message size 2000000 is larger than configured max size 1048576"
    assert sending.sent([Outcome.REFUSED], now=1.0, refusal=reason)
    assert sending.batch() is None
    with pytest.raises(svclink.PublishNacked, match="larger than configured max size"):
        sending.event()


def test_reconnect_backoff_starts_over_once_consuming_again() -> None:
    backoff = handling.Backoff()
    assert [backoff.failed() for _ in range(3)] == [0.1, 0.2, 0.4]
    backoff.connected()
    assert backoff.failed() == 0.1  # a loss after a good session is retried quickly again
    assert max(backoff.failed() for _ in range(20)) == 5.0


# -- publishing without a broker: the Sending state machine the drivers feed ---------------


def _sending(n: int = 1, timeout: float = 5.0) -> Sending:
    settings = Settings(service_name="api")
    prepared = [
        prepare(settings, "user.updated", {"n": i}, exchange="ex", event_id=None, occurred_at=WHEN, wall=0.0)
        for i in range(n)
    ]
    return Sending(prepared, deadline=timeout)


def test_a_confirmed_publish_returns_its_event() -> None:
    sending = _sending()
    batch = sending.batch()
    assert batch is not None and len(batch) == 1
    assert not sending.sent([Outcome.ACKED], now=0.0)
    assert sending.batch() is None
    assert sending.event().data == {"n": 0}


def test_a_connection_found_dead_is_replaced_once_then_the_broker_is_unavailable() -> None:
    sending = _sending()
    sending.failed(Lost("closed while idle"))
    assert sending.batch() is not None  # the same message, on a new connection
    with pytest.raises(svclink.BrokerUnavailable, match="closed while idle"):
        sending.failed(Lost("closed while idle"))
    with pytest.raises(svclink.BrokerUnavailable, match="no connection"):
        _sending().failed(svclink.BrokerUnavailable("no connection"))


def test_messages_lost_after_sending_go_again_once_and_failures_are_collected() -> None:
    sending = _sending(3)
    assert sending.sent([Outcome.ACKED, Outcome.LOST, Outcome.RETURNED], now=0.0)  # drop the connection
    batch = sending.batch()
    assert batch is not None and [json.loads(m.body)["data"] for m in batch] == [{"n": 1}]
    sending.failed(Lost("gone again"))  # sent once already: given up, not "unavailable"
    assert sending.batch() is None
    with pytest.raises(svclink.PublishError) as info:
        sending.events()
    assert type(info.value) is svclink.PublishError  # the first failure in order: the lost one
    assert [e.data for e in info.value.published] == [{"n": 0}]
    assert [(e.data, type(err)) for e, err in info.value.failed] == [
        ({"n": 1}, svclink.PublishError),
        ({"n": 2}, svclink.UnroutableError),
    ]
    assert "not sent again" in str(info.value.failed[0][1])


def test_a_message_lost_at_the_deadline_is_a_timeout() -> None:
    sending = _sending(timeout=1.0)
    assert sending.sent([Outcome.LOST], now=1.0)
    assert sending.batch() is None
    with pytest.raises(svclink.PublishTimeout):
        sending.event()


@pytest.mark.parametrize("timeout", ["5", -1, 0, math.nan, math.inf, True, None])
def test_the_publish_deadline_needs_a_positive_finite_timeout(timeout: Any) -> None:
    settings = Settings(publish_timeout=7)
    if timeout is None:
        assert publish_deadline(settings, None, now=100.0) == 107.0
        return
    with pytest.raises(svclink.InvalidEvent, match="timeout"):
        publish_deadline(settings, timeout, now=100.0)
    assert publish_deadline(settings, 0.25, now=100.0) == 100.25


def test_event_ids_are_uuid4_and_a_forked_child_never_repeats_its_parent() -> None:
    """Ids come from ``random`` (no system call per id); CPython reseeds it after ``fork()``,
    so a child publishing right after the fork does not repeat its parent's ids."""
    ids = [_prepared()[0].event_id for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read_end)
        os.write(write_end, " ".join(_prepared()[0].event_id for _ in range(20)).encode())
        os._exit(0)
    os.close(write_end)
    parent = {_prepared()[0].event_id for _ in range(20)}
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 20 and not parent & child


def test_a_consumer_declares_its_exchange_then_its_queues_then_its_bindings() -> None:
    config = ConsumerConfig(
        queue="q", exchange="ex", bindings=["a.*", "b"], retry_delays=[1, 5], max_attempts=3
    )
    topo = topology(config)
    steps = declarations(topo)
    assert steps == (
        ExchangeSpec("ex"),
        topo.queue,
        *topo.retry_queues,
        topo.dead_queue,
        Binding("q", "ex", "a.*"),
        Binding("q", "ex", "b"),
    )
    assert [q.name for q in topo.retry_queues] == ["q.retry.1000", "q.retry.5000"]


def test_a_failed_send_drops_its_connection_only_when_it_is_dead() -> None:
    assert drops_connection(Lost("closed by the broker"))  # the next publish opens a new one
    assert not drops_connection(svclink.BrokerUnavailable("no connection"))  # none was opened
    assert not resolve([Outcome.NACKED], attempt=1, late=False).drop  # an answer about the message: kept
    assert resolve([Outcome.REFUSED], attempt=1, late=False).drop  # the broker closed the channel on it


def test_an_events_context_is_replaced_as_evolve_would_replace_it() -> None:
    """with_context spells attrs.evolve out for speed: every other field must come through."""
    base = Event(event_type="user.created", data={"id": 1}, event_id="e1", occurred_at=WHEN)
    context = svclink.RequestContext(request_id="r1")
    for field in attrs.fields(Event):
        if field.name == "context":
            continue
        marker = object()  # a value no default has: a field left out would lose it
        event = attrs.evolve(base, **{field.name: marker})
        assert getattr(with_context(event, context), field.name) is marker, field.name
    assert with_context(base, context) == attrs.evolve(base, context=context)
