"""Publishing and consuming, each scenario on (sync, aio) x (RabbitMQ, memory://)."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

import svclink
from svclink.core.context.value import bind

from ..events_support import EventEnv, Recorder, env_fixture, eventually

env = env_fixture()


def test_topic_routing_with_star_and_hash(env: EventEnv) -> None:
    star = env.sink(["user.*"], "star")
    hash_ = env.sink(["user.#"], "hash")
    every = env.sink(["#"], "every")
    middle = env.sink(["*.updated"], "middle")
    for event_type in ("user.updated", "user.profile.updated", "user", "order.updated", "order.paid"):
        env.publish(event_type, {})
    assert env.broker.count(star) == 1  # user.updated
    assert env.broker.count(hash_) == 3  # user.updated, user.profile.updated, user
    assert env.broker.count(every) == 5
    assert env.broker.count(middle) == 2  # user.updated, order.updated


def test_the_envelope_round_trips_to_the_handler(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.updated": rec}, bindings=["user.*"])
    before = datetime.now(UTC)
    with bind(request_id="req-round-trip"):
        sent = env.publish("user.updated", {"user_id": 1, "changes": {"name": "b"}, "tags": ["x", "y"]})
    [got] = rec.wait(1)
    assert got == sent
    assert got.data == {"user_id": 1, "changes": {"name": "b"}, "tags": ["x", "y"]}
    assert got.event_type == "user.updated" and got.event_id == sent.event_id
    assert got.source == env.settings.service_name
    assert got.occurred_at.tzinfo is not None and before <= got.occurred_at <= datetime.now(UTC)
    assert got.context is not None and got.context.request_id == "req-round-trip"
    assert got.attempt == 1


def test_the_handler_runs_with_the_publishers_request_id_bound(env: EventEnv) -> None:
    rec = Recorder()
    env.consume(env.queue(), {"user.*": rec}, bindings=["user.*"])
    with bind(request_id="req-A"):
        env.publish("user.updated", {"n": 1})
    with bind(request_id="req-B"):
        env.publish("user.created", {"n": 2})
    env.publish("user.deleted", {"n": 3})  # outside any context: a fresh id, still one bound
    rec.wait(3)
    by_data = {c[0].data["n"]: c[1] for c in rec.calls}
    assert by_data[1] == "req-A" and by_data[2] == "req-B"
    assert by_data[3] and by_data[3] not in ("req-A", "req-B")
    assert by_data[3] == rec.calls[2][0].context.request_id  # type: ignore[union-attr]


def test_message_carries_type_id_and_request_id_in_amqp_headers(env: EventEnv) -> None:
    sink = env.sink(["user.*"])
    with bind(request_id="req-headers"):
        sent = env.publish("user.updated", {"a": 1})
    got = env.broker.get(sink)
    assert got is not None
    assert got.headers["x-event-type"] == "user.updated"
    assert got.headers["x-event-id"] == sent.event_id
    assert got.headers["X-Request-ID"] == "req-headers"
    assert json.loads(got.body)["event_id"] == sent.event_id


def test_events_larger_than_a_frame_arrive_whole_between_small_ones(env: EventEnv) -> None:
    # RabbitMQ's frames carry 128 KiB: this body goes out as several frames, written at once
    big = {"blob": "".join(chr(0x61 + i % 26) for i in range(400_000)), "tail": "é"}
    sink = env.sink(["doc.*"])
    sent = [env.publish("doc.small", {"n": 1}), env.publish("doc.big", big)]
    sent += env.pub.publish_many([("doc.small", {"n": 2}), ("doc.big", big), ("doc.small", {"n": 3})],
                                 exchange=env.exchange)  # fmt: skip
    got = [env.broker.get(sink) for _ in sent]
    assert [json.loads(g.body)["event_id"] for g in got if g is not None] == [e.event_id for e in sent]
    assert [json.loads(g.body)["data"] for g in got if g is not None] == [e.data for e in sent]
    assert env.broker.get(sink) is None


def test_an_unroutable_publish_warns_once_a_minute_and_returns_not_routed(
    env: EventEnv, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[svclink.UnroutableInfo] = []

    class Seen(svclink.Observer):
        def on_unroutable(self, info: svclink.UnroutableInfo) -> None:
            seen.append(info)

    env.configure(observers=[Seen()])
    pub = env.publisher()
    env.sink(["user.*"])
    with caplog.at_level(logging.WARNING, "svclink.events"):
        first = pub.publish("order.paid", {"id": 1}, exchange=env.exchange)
        second = pub.publish("order.paid", {"id": 2}, exchange=env.exchange)
    assert (first.routed, second.routed) == (False, False)
    (warning,) = [r.getMessage() for r in caplog.records if "was not routed" in r.getMessage()]
    assert f"exchange {env.exchange!r}" in warning and "routing key 'order.paid'" in warning
    assert first.event_id in warning
    assert [(i.event_id, i.routing_key, i.exchange) for i in seen] == [
        (first.event_id, "order.paid", env.exchange),
        (second.event_id, "order.paid", env.exchange),
    ]
    assert pub.publish("user.updated", {}, exchange=env.exchange).routed
    batch = pub.publish_many([("order.paid", {}), ("user.updated", {})], exchange=env.exchange)
    assert [e.routed for e in batch] == [False, True]


def test_unroutable_raise_per_publish_or_in_settings(env: EventEnv) -> None:
    env.sink(["user.*"])
    with pytest.raises(svclink.UnroutableError, match=r"order\.paid"):
        env.publish("order.paid", {"id": 1}, unroutable="raise")
    env.publish("user.updated", {})  # the publisher is still usable afterwards
    with pytest.raises(svclink.InvalidEvent, match="unroutable must be 'warn' or 'raise'"):
        env.publish("order.paid", {}, unroutable="drop")
    env.configure(unroutable="raise")
    pub = env.publisher()
    with pytest.raises(svclink.UnroutableError):
        pub.publish("order.paid", {"id": 2}, exchange=env.exchange)
    assert not pub.publish("order.paid", {"id": 3}, exchange=env.exchange, unroutable="warn").routed


def test_invalid_events_are_refused_before_any_io(env: EventEnv) -> None:
    with pytest.raises(svclink.InvalidEvent):
        env.publish("user.*", {})
    with pytest.raises(svclink.InvalidEvent):
        env.publish("user.updated", {"when": datetime.now(UTC)})


def test_exact_pattern_and_default_handlers(env: EventEnv) -> None:
    exact, pattern, default = Recorder(), Recorder(), Recorder()
    env.consume(env.queue(), {"user.updated": exact, "user.*": pattern, "#": default})
    env.publish("user.updated", {})
    env.publish("user.created", {})
    env.publish("order.paid", {})
    eventually(lambda: len(exact.calls) + len(pattern.calls) + len(default.calls) == 3)
    assert [e.event_type for e in exact.events] == ["user.updated"]
    assert [e.event_type for e in pattern.events] == ["user.created"]
    assert [e.event_type for e in default.events] == ["order.paid"]


def test_an_unknown_event_type_is_acked_and_the_next_one_handled(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    consumer = env.consume(queue, {"user.updated": rec}, bindings=["user.*"])
    env.publish("user.created", {"unknown": True})
    env.publish("user.updated", {"known": True})
    assert [e.data for e in rec.wait(1)] == [{"known": True}]
    consumer.stop()
    assert env.broker.count(queue) == 0
    assert env.broker.count(queue + ".dead") == 0


def test_a_handler_that_fails_once_is_retried_and_succeeds(env: EventEnv) -> None:
    rec = Recorder(fail_first=1)
    queue = env.queue()
    consumer = env.consume(queue, {"user.updated": rec}, retry_delays=[0.1], max_attempts=3)
    sent = env.publish("user.updated", {"x": 1})
    first, second = rec.wait(2)
    assert first.event_id == second.event_id == sent.event_id
    assert (first.attempt, second.attempt) == (1, 2)
    assert rec.calls[1][2] - rec.calls[0][2] >= 0.09  # waited in the delay queue
    assert rec.calls[1][1] == rec.calls[0][1]  # the same request id on the retry
    time.sleep(0.3)
    assert len(rec.calls) == 2
    consumer.stop()
    assert env.broker.count(queue) == 0 and env.broker.count(queue + ".dead") == 0


def test_a_handler_that_always_fails_ends_in_the_dead_letter_queue(env: EventEnv) -> None:
    rec = Recorder(always_fail=True)
    queue = env.queue()
    env.consume(queue, {"user.updated": rec}, retry_delays=[0.05, 0.15], max_attempts=3)
    sent = env.publish("user.updated", {"x": 1})
    rec.wait(3)
    eventually(lambda: env.broker.count(queue + ".dead") == 1, what="the dead-lettered message")
    time.sleep(0.4)
    assert len(rec.calls) == 3  # no more attempts, no hot loop
    gaps = [b[2] - a[2] for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.14  # each retry waited its delay
    dead = env.broker.get(queue + ".dead")
    assert dead is not None
    assert json.loads(dead.body)["event_id"] == sent.event_id
    assert dead.headers["x-svclink-dead-reason"] == "max-attempts"
    assert dead.headers["x-svclink-attempt"] == 3
    assert "RuntimeError: handler failure on attempt 3" in dead.headers["x-svclink-error"]
    assert dead.headers["x-svclink-original-routing-key"] == "user.updated"
    assert dead.headers["x-svclink-original-exchange"] == env.exchange


def test_a_poison_message_is_dead_lettered_and_the_next_one_flows(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.updated": rec}, bindings=["user.*"], max_attempts=3, retry_delays=[0.05])
    env.broker.publish_raw(env.exchange, "user.updated", b"\x00 not an envelope")
    env.publish("user.updated", {"good": True})
    assert [e.data for e in rec.wait(1)] == [{"good": True}]
    eventually(lambda: env.broker.count(queue + ".dead") == 1, what="the poison message in .dead")
    dead = env.broker.get(queue + ".dead")
    assert dead is not None and dead.body == b"\x00 not an envelope"
    assert dead.headers["x-svclink-dead-reason"] == "undecodable"
    assert "not UTF-8 JSON" in dead.headers["x-svclink-error"]
    assert len(rec.calls) == 1


def test_stop_from_a_handler_finishes_that_message_and_returns(env: EventEnv) -> None:
    queue = env.queue()
    holder: list[object] = []
    rec = Recorder(then=lambda _e: holder[0].stop())  # type: ignore[attr-defined]
    running = env.start(env.consumer(queue, {"user.updated": rec}, prefetch=1))
    holder.append(running.consumer)
    eventually(lambda: env.broker.consumers(queue) >= 1)
    env.publish("user.updated", {"n": 1})
    assert running.returned.wait(8), "run() did not return after stop() in a handler"
    running.stop()
    assert len(rec.calls) == 1
    env.publish("user.updated", {"n": 2})  # the queue outlives the consumer: durable
    assert env.broker.count(queue) == 1


def test_stop_from_another_thread_returns_promptly_while_idle(env: EventEnv) -> None:
    running = env.consume(env.queue(), {"user.updated": Recorder()})
    started = time.monotonic()
    running.stop()
    assert time.monotonic() - started < 5


def test_heartbeats_flow_while_a_slow_handler_runs(env: EventEnv) -> None:
    env.configure(amqp_heartbeat=1)  # the broker drops a connection after ~2 missed heartbeats
    done = threading.Event()
    rec = Recorder(sleep=3.5, then=lambda _e: done.set())
    queue = env.queue()
    env.consume(queue, {"user.updated": rec})
    env.publish("user.updated", {"n": 1})
    assert done.wait(8), "the slow handler did not finish"
    eventually(lambda: env.broker.count(queue) == 0)
    time.sleep(1.0)
    assert len(rec.calls) == 1  # acked on the same connection: not redelivered


def test_quorum_queues_are_declared_with_their_type(env: EventEnv) -> None:
    rec = Recorder(fail_first=1)
    queue = env.queue()
    env.consume(queue, {"user.updated": rec}, queue_type="quorum", retry_delays=[0.05], max_attempts=2)
    env.publish("user.updated", {})
    rec.wait(2)
    assert env.broker.arguments_ok(queue, {"x-queue-type": "quorum"})
    assert env.broker.arguments_ok(queue + ".dead", {"x-queue-type": "quorum"})


def test_bindings_default_to_the_handlers_patterns(env: EventEnv) -> None:
    rec = Recorder()
    env.consume(env.queue(), {"user.updated": rec, "order.*": rec})
    env.publish("user.updated", {})
    env.publish("order.paid", {})
    assert not env.publish("user.created", {}).routed  # no binding for it
    assert sorted(e.event_type for e in rec.wait(2)) == ["order.paid", "user.updated"]


def test_handlers_of_the_wrong_kind_are_refused(env: EventEnv) -> None:
    consumer = env.module.EventConsumer(env.queue(), exchange=env.exchange, settings=env.settings)

    def plain(_event: object) -> None: ...

    async def coro(_event: object) -> None: ...

    with pytest.raises(TypeError):
        consumer.on("user.updated")(coro if env.side == "sync" else plain)


def test_a_signed_context_proves_the_publisher_and_user_to_the_handler(env: EventEnv) -> None:
    env.configure(signing_key="k" * 32)
    rec = Recorder()
    env.consume(env.queue(), {"user.updated": rec})
    with bind(request_id="req-signed", user_id="u-42"):
        env.publisher().publish("user.updated", {}, exchange=env.exchange)
    [event] = rec.wait(1)
    assert event.context is not None
    assert event.context.request_id == "req-signed"
    assert event.context.caller_service == env.settings.service_name
    assert event.context.user_id == "u-42"


def test_strict_consumers_dead_letter_unsigned_events(env: EventEnv) -> None:
    env.configure(signing_key="k" * 32, require_signed_context=True)
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.updated": rec})
    env.configure(signing_key=None)  # this publisher signs nothing
    with bind(request_id="req-unsigned", user_id="forged"):
        env.publisher().publish("user.updated", {}, exchange=env.exchange)
    eventually(lambda: env.broker.count(queue + ".dead") == 1)
    dead = env.broker.get(queue + ".dead")
    assert dead is not None and dead.headers["x-svclink-dead-reason"] == "untrusted"
    assert rec.calls == []


def test_a_queue_declared_with_other_arguments_is_a_clear_error(env: EventEnv) -> None:
    queue = env.queue()
    env.broker.sink(queue, env.exchange, ["user.*"], arguments={"x-max-length": 5})
    running = env.start(env.consumer(queue, {"user.updated": Recorder()}))
    assert running.returned.wait(8), "run() should give up on a topology it cannot declare"
    assert isinstance(running.error, svclink.EventError)
    message = str(running.error)
    assert f"queue {queue!r} exists with other arguments" in message
    assert "arguments: none" in message  # what the consumer declares
    assert "x-max-length" in message  # and, in the broker's words, what the queue has


def test_consuming_from_an_exchange_of_another_type_is_a_clear_error_naming_it(env: EventEnv) -> None:
    name = env.other_exchange("fanout")
    running = env.start(env.consumer(env.queue(), {"user.updated": Recorder()}, exchange=name))
    assert running.returned.wait(8), "run() should give up on an exchange it cannot use"
    assert isinstance(running.error, svclink.EventError)
    assert f"exchange {name!r} exists with other settings" in str(running.error)
    assert "queues" not in str(running.error)


def test_a_refused_declaration_leaves_the_same_queues_behind_on_every_side(env: EventEnv) -> None:
    queue = env.queue()
    env.broker.sink(queue + ".dead", env.exchange, [], arguments={"x-max-length": 5})  # other settings
    consumer = env.consumer(queue, {"user.updated": Recorder()}, max_attempts=2, retry_delays=[0.05])
    running = env.start(consumer)
    assert running.returned.wait(8), "run() should give up on a topology it cannot declare"
    assert isinstance(running.error, svclink.EventError)
    assert f"queue {queue + '.dead'!r} exists with other arguments" in str(running.error)
    # the order is the same on both sides: exchange, work queue, delay queues, dead queue, bindings
    assert env.broker.exists(queue) and env.broker.exists(queue + ".retry.50")
    assert not env.publish("user.updated", {}).routed  # the bindings come last: none was made


def test_publishing_to_an_exchange_of_another_type_is_a_clear_error(env: EventEnv) -> None:
    name = env.other_exchange("fanout")
    with pytest.raises(svclink.EventError, match=rf"exchange '{name}' exists with other settings"):
        env.publish("user.updated", {}, exchange=name)
    env.sink(["user.*"])
    env.publish("user.updated", {})  # the publisher recovers for the next publish


def test_an_exclusive_consumer_has_its_queues_only_while_it_runs(env: EventEnv) -> None:
    rec = Recorder(fail_first=1)
    queue = env.queue("exclusive")
    consumer = env.consumer(queue, {"user.updated": rec}, exclusive=True, max_attempts=2, retry_delays=[0.05])
    running = env.start(consumer)

    def routed() -> bool:
        return env.publish("user.updated", {"n": 1}).routed  # False until the queue is bound

    eventually(routed, what="the exclusive queue bound")
    first, retried = rec.wait(2)  # failed once, came back through its own delay queue
    assert retried.event_id == first.event_id and retried.attempt == 2
    running.stop()
    for name in (queue, queue + ".retry.50", queue + ".dead"):
        eventually(lambda name=name: not env.broker.exists(name), what=f"{name} deleted")
    assert not env.publish("user.updated", {"n": 2}).routed


class PublishWatcher(svclink.Observer):
    """An observer that keeps what ``on_publish`` was told."""

    def __init__(self) -> None:
        self.seen: list[svclink.PublishInfo] = []

    def on_publish(self, info: svclink.PublishInfo) -> None:
        self.seen.append(info)


def test_observers_hear_of_every_publish_confirmed_or_not(env: EventEnv) -> None:
    watcher = PublishWatcher()
    env.configure(observers=[watcher])
    env.sink(["user.*"])
    publisher = env.publisher()
    publisher.publish("user.updated", {"n": 1}, exchange=env.exchange)
    with pytest.raises(svclink.UnroutableError):
        publisher.publish("order.placed", {"n": 2}, exchange=env.exchange, unroutable="raise")
    publisher.publish_many([("user.created", {}), ("user.deleted", {})], exchange=env.exchange)
    kinds = [(i.exchange, i.event_type, i.error) for i in watcher.seen]
    assert kinds == [
        (env.exchange, "user.updated", None),
        (env.exchange, "order.placed", "UnroutableError"),
        (env.exchange, "user.created", None),
        (env.exchange, "user.deleted", None),
    ]
    assert all(0 <= i.latency < 5 for i in watcher.seen)


def test_a_publisher_is_a_context_manager_that_closes_its_connection(env: EventEnv) -> None:
    env.sink(["user.*"])
    name = f"{env.connection_name}-with"
    if env.side == "sync":
        with svclink.sync.Publisher(env.settings, connection_name=name) as publisher:
            publisher.publish("user.updated", {}, exchange=env.exchange)
            assert env.broker.connections(name) == 1
    else:

        async def publish_in_block() -> None:
            async with svclink.aio.Publisher(env.settings, connection_name=name) as publisher:
                await publisher.publish("user.updated", {}, exchange=env.exchange)
                assert env.broker.connections(name) == 1

        assert env.runner is not None
        env.runner.run(publish_in_block())
    eventually(lambda: env.broker.connections(name) == 0, what="the publisher's connection closed")
