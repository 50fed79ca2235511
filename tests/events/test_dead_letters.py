"""The dead-letter tools on both sides against RabbitMQ: list, show, replay (confirmed), purge."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync

from ..events_support import EventEnv, Recorder, env_fixture, eventually

env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])


def tools(env: EventEnv, queue: str) -> Any:
    """The side's DeadLetters, with every method called synchronously."""
    dead = env.module.DeadLetters(queue, settings=env.settings)
    if env.runner is None:
        return dead

    class Awaited:
        queue = dead.queue

        def __getattr__(self, name: str) -> Any:
            method = getattr(dead, name)
            return lambda *a, **k: env.runner.run(method(*a, **k))  # type: ignore[union-attr]

    return Awaited()


def dead_lettered(env: EventEnv, n: int) -> tuple[str, list[svclink.sync.Event], Recorder]:
    """A consumer whose handler fails on the first attempt of every event, with ``n`` events dead-lettered."""
    queue = env.queue()
    handler = Recorder(fail_first=n)
    running = env.consume(queue, {"order.*": handler}, max_attempts=1)
    sent = [env.publish("order.paid", {"n": i}) for i in range(n)]
    eventually(lambda: env.broker.count(queue + ".dead") == n, what=f"{n} dead letters")
    running.stop()
    return queue, sent, handler


def test_list_and_show_leave_the_queue_as_it_was(env: EventEnv) -> None:
    started = time.time()
    queue, sent, _ = dead_lettered(env, 3)
    dead = tools(env, queue)
    listed = dead.list()
    assert [d.event_id for d in listed] == [e.event_id for e in sent]
    first = listed[0]
    assert (first.event_type, first.reason, first.attempts) == ("order.paid", "max-attempts", 1)
    assert first.error == "RuntimeError: handler failure on attempt 1"
    assert (
        first.dead_lettered_at is not None
        and started - 1 <= first.dead_lettered_at.timestamp() <= time.time()
    )
    assert (first.exchange, first.routing_key) == (env.exchange, "order.paid")
    assert [d.event_id for d in dead.list(limit=2)] == [e.event_id for e in sent[:2]]
    shown = dead.show(sent[1].event_id)
    assert shown.headers["x-svclink-dead-reason"] == "max-attempts"
    assert json.loads(shown.body)["data"] == {"n": 1}
    assert dead.show("no-such-id") is None
    assert env.broker.count(queue + ".dead") == 3 and dead.count() == 3


def test_replay_sends_back_as_a_first_attempt_and_removes_only_what_was_confirmed(env: EventEnv) -> None:
    queue, sent, handler = dead_lettered(env, 3)
    dead = tools(env, queue + ".dead")  # the .dead queue's own name works too
    replayed = dead.replay(sent[1].event_id)
    assert [d.event_id for d in replayed] == [sent[1].event_id]
    assert dead.count() == 2 and env.broker.count(queue) == 1  # in the work queue again
    fixed = Recorder()
    running = env.consume(queue, {"order.*": fixed}, max_attempts=1)
    (again,) = fixed.wait(1)
    assert again.event_id == sent[1].event_id and again.attempt == 1 and again.data == {"n": 1}
    assert [d.event_id for d in dead.replay(limit=1)] == [sent[0].event_id]
    assert [d.event_id for d in dead.replay()] == [sent[2].event_id]
    fixed.wait(3)
    assert dead.count() == 0
    running.stop()
    assert len(handler.calls) == 3  # the failing handler saw each once, before it was fixed


def test_a_replay_nobody_is_bound_for_stays_in_the_dead_letter_queue(env: EventEnv) -> None:
    queue, sent, _ = dead_lettered(env, 1)
    env.broker.delete([queue], [])  # the consumer's queue is gone: nothing is bound for order.paid
    dead = tools(env, queue)
    with pytest.raises(svclink.EventError, match=f"not replayed.*{sent[0].event_id}"):
        dead.replay(sent[0].event_id)
    assert dead.count() == 1


def test_purge_deletes_them_all(env: EventEnv) -> None:
    queue, _, _ = dead_lettered(env, 2)
    dead = tools(env, queue)
    assert dead.purge() == 2
    assert dead.count() == 0 and dead.list() == []


def test_a_missing_queue_is_a_clear_error(env: EventEnv) -> None:
    with pytest.raises(svclink.EventError, match=r"no dead-letter queue 'no\.such\.queue\.dead'"):
        tools(env, "no.such.queue").list()
