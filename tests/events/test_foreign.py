"""Events from services that do not use svclink: any JSON object is an event, on both sides.

The other end is written the way such services write it: raw aio-pika with its defaults
(:mod:`tests.fleet_code`), or a plain publish with the headers hand-written code sets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ..events_support import EventEnv, Recorder, env_fixture, eventually
from ..fleet_code import HandWrittenPublisher, LoopThread

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
    headers = {"event_type": "user.updated", "X-Request-ID": "req-from-api", "user_id": 5}
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
    assert first.context.request_id == "req-from-api"
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
