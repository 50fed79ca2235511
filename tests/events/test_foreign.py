"""Events from services that do not use svclink: any JSON object is an event, on both sides.

The other end is written the way such services write it: raw aio-pika with its defaults
(:mod:`tests.fleet_code`), or a plain publish with the headers hand-written code sets.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import svclink
from svclink.core.context.value import bind

from ..events_support import EventEnv, Recorder, env_fixture, eventually
from ..fleet_code import HandWrittenConsumer, HandWrittenPublisher, LoopThread

env = env_fixture()
rabbit_env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def test_events_of_hand_written_aio_pika_code_reach_svclink_handlers(
    rabbit_env: EventEnv, loop: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = HandWrittenPublisher(rabbit_env.exchange, loop)
    publisher.connect()  # declares the exchange first, as aio-pika does by default: not durable
    try:
        rec = Recorder()
        queue = rabbit_env.queue()
        with caplog.at_level(logging.WARNING, "svclink.events"):
            rabbit_env.consume(queue, {"user.updated": rec}, bindings=["user.*"])
            sent = publisher.publish_event("user.updated", {"user_id": 5, "changes": {"name": "b"}})
            [event] = rec.wait(1)
        assert event.event_type == "user.updated" and event.format == "foreign"
        assert event.data == sent and event.data["user_id"] == 5
        assert event.source == "api_service"
        assert event.occurred_at == datetime.fromisoformat(sent["timestamp"]).replace(tzinfo=UTC)
        assert rabbit_env.broker.count(queue + ".dead") == 0
        warnings = [r.getMessage() for r in caplog.records if "exists with other settings" in r.getMessage()]
        assert len(warnings) == 1 and repr(rabbit_env.exchange) in warnings[0]
        assert "inequivalent arg 'durable'" in warnings[0]
    finally:
        publisher.close()


def test_any_json_object_is_an_event_with_type_id_and_context_from_its_headers(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.updated": rec, "order.paid": rec}, bindings=["user.*", "order.*"])
    body = json.dumps({"user_id": 5, "changes": {"name": "b"}}).encode()
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {
        "event_type": "user.updated",
        "X-Request-ID": "req-from-api",
        "traceparent": trace,
        "user_id": 5,
    }
    env.broker.publish_raw(env.exchange, "user.anything", body, headers)
    env.broker.publish_raw(env.exchange, "user.anything", body, headers)  # the same message again
    env.broker.publish_raw(env.exchange, "order.paid", b'{"order_id": "o-1", "event_id": "evt-o-1"}')
    rec.wait(3)
    by_type = sorted(rec.calls, key=lambda call: call[0].event_type)
    (paid, paid_rid, _), (first, first_rid, _), (again, _, _) = by_type
    assert (paid.event_type, paid.event_id) == ("order.paid", "evt-o-1")  # type from the routing key
    assert paid.data == {"order_id": "o-1", "event_id": "evt-o-1"}  # the body as it is
    assert first.event_type == again.event_type == "user.updated"  # from the header, not the routing key
    assert first.data == {"user_id": 5, "changes": {"name": "b"}} and first.format == "foreign"
    assert first.event_id == again.event_id  # the same message has the same id: deduplication works
    assert first_rid == "req-from-api" and first.context is not None
    assert first.context.request_id == "req-from-api" and first.context.traceparent == trace
    assert paid_rid is not None and paid_rid != "req-from-api"  # no header: a fresh one
    assert env.broker.count(queue + ".dead") == 0


def test_a_retried_foreign_event_keeps_its_type_and_id(env: EventEnv) -> None:
    rec = Recorder(fail_first=1)
    queue = env.queue()
    env.consume(queue, {"user.created": rec}, max_attempts=2, retry_delays=[0.05])
    env.broker.publish_raw(env.exchange, "user.created", b'{"user_id": 7}')
    first, second = rec.wait(2)
    assert (first.event_type, second.event_type) == ("user.created", "user.created")
    assert first.event_id == second.event_id and (first.attempt, second.attempt) == (1, 2)
    eventually(lambda: env.broker.count(queue) == 0, what="the work queue empty")
    assert env.broker.count(queue + ".dead") == 0


def test_a_body_that_is_not_a_json_object_is_dead_lettered_saying_so(
    env: EventEnv, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()
    queue = env.queue()
    with caplog.at_level(logging.ERROR, "svclink.events"):
        env.consume(queue, {"#": rec})
        env.broker.publish_raw(env.exchange, "user.updated", b"<user id='5'/>")
        env.broker.publish_raw(env.exchange, "user.deleted", b"[5]")
        eventually(lambda: env.broker.count(queue + ".dead") == 2, what="both in .dead")
    first, second = env.broker.get(queue + ".dead"), env.broker.get(queue + ".dead")
    assert first is not None and second is not None
    reasons = {m.headers["x-svclink-original-routing-key"]: m.headers for m in (first, second)}
    assert {h["x-svclink-dead-reason"] for h in reasons.values()} == {"undecodable"}
    assert "JSON but an array, not an object" in reasons["user.deleted"]["x-svclink-error"]
    assert "not UTF-8 JSON" in reasons["user.updated"]["x-svclink-error"]
    lines = "\n".join(r.getMessage() for r in caplog.records)
    assert "routing key 'user.updated'" in lines and "routing key 'user.deleted'" in lines
    assert rec.calls == []


def test_a_strict_consumer_takes_svclink_envelopes_only(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.updated": rec}, strict=True)
    env.broker.publish_raw(env.exchange, "user.updated", b'{"event_type": "user.updated", "user_id": 5}')
    sent = env.publish("user.updated", {"user_id": 6})
    [event] = rec.wait(1)
    assert event.event_id == sent.event_id and event.format == "envelope"
    eventually(lambda: env.broker.count(queue + ".dead") == 1, what="the foreign event in .dead")
    dead = env.broker.get(queue + ".dead")
    assert dead is not None and "version" in dead.headers["x-svclink-error"]


# -- flat events out, and exchanges declared by the other side ------------------------------

ORDERS = ["foreign-first", "svclink-first"]


@pytest.mark.parametrize("order", ORDERS)
def test_flat_events_reach_hand_written_aio_pika_consumers(
    rabbit_env: EventEnv, loop: LoopThread, order: str
) -> None:
    consumer = HandWrittenConsumer(rabbit_env.exchange, rabbit_env.queue("hand-written"), loop)
    try:
        if order == "foreign-first":  # the exchange exists, not durable: svclink uses it as it is
            consumer.start(["user.*"])
            rabbit_env.configure(event_formats={rabbit_env.exchange: "flat"})
            publisher = rabbit_env.publisher()
        else:  # svclink declares it first, as aio-pika's defaults will ask for it later
            rabbit_env.configure(
                event_formats={rabbit_env.exchange: "flat"}, transient_exchanges=[rabbit_env.exchange]
            )
            publisher = rabbit_env.publisher()
            # declares the exchange; nobody is bound yet
            assert not publisher.publish("user.created", {"user_id": 4}, exchange=rabbit_env.exchange).routed
            consumer.start(["user.*"])
        with bind(request_id="req-flat-1"):
            sent = publisher.publish(
                "user.updated", {"user_id": 5, "changes": {"name": "b"}}, exchange=rabbit_env.exchange
            )
        assert sent.format == "flat"
        [event_data] = eventually(lambda: consumer.handled, what="the hand-written handler to run")
        assert consumer.failed == []
        assert event_data["event_type"] == "user.updated" and event_data["user_id"] == 5
        assert event_data["changes"] == {"name": "b"} and event_data["event_id"] == sent.event_id
        assert event_data["service"] == rabbit_env.settings.service_name
        assert datetime.fromisoformat(event_data["timestamp"]) == sent.occurred_at
        assert consumer.headers[-1]["event_type"] == "user.updated"
        assert consumer.headers[-1]["X-Request-ID"] == "req-flat-1"
    finally:
        consumer.close()


@pytest.mark.parametrize("order", ORDERS)
def test_a_mixed_durability_exchange_works_for_svclink_consumers_in_either_order(
    rabbit_env: EventEnv, loop: LoopThread, order: str
) -> None:
    publisher = HandWrittenPublisher(rabbit_env.exchange, loop)
    rec = Recorder()
    queue = rabbit_env.queue()
    try:
        if order == "foreign-first":
            publisher.connect()
            rabbit_env.consume(queue, {"user.updated": rec}, bindings=["user.*"])
        else:
            rabbit_env.configure(transient_exchanges=[rabbit_env.exchange])
            rabbit_env.consume(queue, {"user.updated": rec}, bindings=["user.*"])
            publisher.connect()
        sent = publisher.publish_event("user.updated", {"user_id": 8})
        [event] = rec.wait(1)
        assert event.data == sent and event.event_type == "user.updated"
        assert rabbit_env.broker.count(queue + ".dead") == 0
    finally:
        publisher.close()


def test_flat_events_round_trip_to_svclink_consumers(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.*": rec})
    with bind(request_id="req-flat-2"):
        sent = env.publish("user.updated", {"user_id": 5, "changes": {"name": "b"}}, format="flat")
    env.configure(event_formats={env.exchange: "flat"})
    by_setting = env.publisher().publish("user.created", {"user_id": 6}, exchange=env.exchange)
    by_argument = env.publisher().publish(
        "user.deleted", {"user_id": 7}, exchange=env.exchange, format="envelope"
    )
    events = {e.event_type: e for e in rec.wait(3)}
    got = events["user.updated"]
    assert (got.data, got.event_id, got.format) == (
        {"user_id": 5, "changes": {"name": "b"}},
        sent.event_id,
        "flat",
    )
    assert got.source == env.settings.service_name and got.occurred_at == sent.occurred_at
    assert [call[1] for call in rec.calls if call[0].event_type == "user.updated"] == ["req-flat-2"]
    assert (by_setting.format, events["user.created"].format, events["user.created"].data) == (
        "flat",
        "flat",
        {"user_id": 6},
    )
    assert (by_argument.format, events["user.deleted"].format) == ("envelope", "envelope")


@pytest.mark.parametrize(
    ("data", "kwargs", "says"),
    [
        ({"user_id": 5}, {"format": "xml"}, "format must be 'envelope' or 'flat'"),
        ([1, 2], {"format": "flat"}, "must be a dict"),
        ({"user_id": 5, "timestamp": "x"}, {"format": "flat"}, "must not have the keys 'timestamp'"),
    ],
)
def test_bad_flat_publishes_are_refused_before_any_io(
    env: EventEnv, data: Any, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(svclink.InvalidEvent, match=re.escape(says)):
        env.publish("user.updated", data, **kwargs)
    with pytest.raises(svclink.InvalidEvent, match=re.escape(says)):
        env.pub.publish_many([("user.updated", data)], exchange=env.exchange, **kwargs)
