"""Waiting until a consumer consumes (``wait_ready``), and capturing events without one.

``wait_ready`` is the documented way for a test (or a process that must not publish into
the void) to know the consumer's queue is declared, bound and consumed; the memory
broker's ``consumer_count`` answers 0 for a queue not declared yet and its ``bind`` keeps
a copy of matching events in a queue of the test's own.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import svclink
import svclink.testing

from ..events_support import WAIT, EventEnv, Recorder, env_fixture

env = env_fixture()
memory = env_fixture([("sync", "memory"), ("aio", "memory")])


def wait_ready(env: EventEnv, consumer: Any, timeout: float | None) -> bool:
    """``consumer.wait_ready(timeout)`` on the consumer's side (aio: awaited on the test's own loop)."""
    if env.runner is None:
        return bool(consumer.wait_ready(timeout))
    return bool(env.runner.run(consumer.wait_ready(timeout)))


def test_a_consumer_that_is_ready_takes_the_next_publish(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    consumer = env.consumer(queue, {"user.updated": rec}, bindings=["user.*"])
    env.start(consumer)
    assert wait_ready(env, consumer, WAIT)
    assert env.broker.consumers(queue) == 1
    env.publish("user.updated", {"n": 1})  # bound already: not unroutable
    assert rec.wait(1)[0].data == {"n": 1}


def test_wait_ready_is_false_when_the_run_ends_without_consuming(env: EventEnv) -> None:
    queue = env.queue()
    env.broker.sink(queue, env.exchange, ["user.*"], arguments={"x-max-length": 5})
    consumer = env.consumer(queue, {"user.updated": Recorder()})  # declares it without the argument
    running = env.start(consumer)
    started = time.monotonic()
    assert not wait_ready(env, consumer, 60)
    assert time.monotonic() - started < 30  # the failed run ended the wait, not the timeout
    assert running.returned.wait(WAIT) and isinstance(running.error, svclink.EventError)


def test_wait_ready_is_false_after_the_timeout_and_refuses_a_bad_one(env: EventEnv) -> None:
    consumer = env.consumer(env.queue(), {"user.updated": Recorder()})  # never run
    assert not wait_ready(env, consumer, 0.05)
    for timeout in (-1, "5", float("nan"), True):
        with pytest.raises(svclink.InvalidEvent, match="timeout"):
            wait_ready(env, consumer, timeout)


def test_the_consumer_count_of_an_undeclared_queue_is_zero(memory: EventEnv) -> None:
    broker = svclink.testing.get_broker()
    assert broker.consumer_count(memory.queue("never-declared")) == 0


def test_bind_captures_events_without_a_consumer(memory: EventEnv) -> None:
    broker = svclink.testing.get_broker()
    captured = memory.queue("captured")
    broker.bind(captured, memory.exchange, "user.*")
    memory.publish("user.updated", {"n": 1})
    assert not memory.publish("order.paid", {"n": 2}).routed  # not bound: returned, as by RabbitMQ
    [message] = broker.messages(captured)
    assert message.routing_key == "user.updated"
    broker.bind(captured, memory.exchange, "order.#")  # a second pattern on the same queue
    memory.publish("order.paid", {"n": 3})
    assert [m.routing_key for m in broker.messages(captured)] == ["user.updated", "order.paid"]
