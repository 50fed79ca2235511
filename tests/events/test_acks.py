"""Batched acks against the real RabbitMQ, on both sides: nothing handled comes back, nothing stalls.

The consumers ack finished messages in as few frames as is safe (:mod:`svclink.core.events.acks`);
what a user sees of that is only its failures: a message handled twice after a stop or a
lost connection (an ack held back and never sent), a message lost (a ``multiple`` ack
that covered one not handled), or a consumer that stalls behind a slow handler (acks
held back behind it, filling the prefetch window).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from svclink.core.events.envelope import Event

from ..events_support import WAIT, EventEnv, Recorder, env_fixture

env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])
aio_env = env_fixture([("aio", "rabbitmq")])


class Slow(Recorder):
    """Records like :class:`Recorder`; its first call blocks until :attr:`released` (at most ``WAIT``)
    and notes when it returned in :attr:`returned` (a redelivery's call returns at once, unnoted)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.returned: list[float] = []

    def sync(self, event: Event) -> None:
        super().sync(event)
        if len(self.calls) == 1:
            self.released.wait(WAIT)
            self.returned.append(time.monotonic())

    async def aio(self, event: Event) -> None:
        await super().aio(event)
        if len(self.calls) == 1:
            deadline = time.monotonic() + WAIT
            while not self.released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self.returned.append(time.monotonic())


def settled_count(env: EventEnv, queue: str, expected: int) -> int:
    """The queue's message count once the broker has requeued what a closed connection left unacked.

    Requeueing follows the connection's close at the broker's own pace, so the count is
    waited for (up to ``WAIT``); once there, it must stay put (a late requeue of an acked
    message would raise it). Returns the count, for the caller to assert on.
    """
    deadline = time.monotonic() + WAIT
    while (count := env.broker.count(queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    if count == expected:
        time.sleep(0.5)
        count = env.broker.count(queue)
    return count


def test_nothing_handled_is_redelivered_after_a_clean_stop(env: EventEnv) -> None:
    queue = env.sink(["user.*"], "q")
    sent = env.pub.publish_many([("user.updated", {"n": n}) for n in range(200)], exchange=env.exchange)
    assert env.broker.count(queue) == 200
    consumers: list[Any] = []

    def stop_at_57(_event: Event) -> None:
        if len(first.calls) >= 57:
            consumers[0].stop()

    first = Recorder(then=stop_at_57)
    consumer = env.consumer(queue, {"user.updated": first}, prefetch=10)
    consumers.append(consumer)
    running = env.start(consumer)
    assert running.returned.wait(WAIT), "run() did not return after stop() in a handler"
    running.stop()  # raises what run() raised, if anything
    handled = [e.event_id for e in first.events]
    assert len(handled) == len(set(handled)), "an event handled twice in one run"
    if env.side == "sync":
        assert len(handled) == 57  # the message in hand is finished, the prefetched ones left
    else:
        assert 57 <= len(handled) < 200  # the handlers running at the stop finish too
    assert env.broker.consumers(queue) == 0
    # every handled message was acked before the connection closed, and only those
    assert settled_count(env, queue, 200 - len(handled)) == 200 - len(handled)

    second = Recorder()
    running = env.consume(queue, {"user.updated": second}, prefetch=10)
    second.wait(200 - len(handled))
    time.sleep(0.3)
    running.stop()
    again = [e.event_id for e in second.events]
    assert len(again) == 200 - len(handled)
    assert set(handled).isdisjoint(again), "events handled by the first run came back"
    assert set(handled) | set(again) == {e.event_id for e in sent}
    assert settled_count(env, queue, 0) == 0


def test_a_slow_handler_does_not_stall_the_others(aio_env: EventEnv) -> None:
    """aio: a handler still running at the front of the queue does not hold back the acks behind it.

    Were those acks held until the slow one finished, the prefetch window (10) would fill
    after 9 more messages and the other 91 would wait for the slow handler.
    """
    env = aio_env
    queue = env.sink(["user.*"], "q")
    slow_done = threading.Event()
    slow = Recorder(sleep=2.0, then=lambda _e: slow_done.set())
    fast = Recorder()
    env.publish("user.slow", {"n": -1})  # at the front of the queue
    sent = env.pub.publish_many([("user.updated", {"n": n}) for n in range(100)], exchange=env.exchange)
    running = env.consume(queue, {"user.slow": slow, "user.updated": fast}, prefetch=10)
    fast.wait(100, timeout=WAIT)
    started = slow.calls[0][2]
    assert len(slow.calls) == 1
    assert max(c[2] for c in fast.calls) < started + 1.0  # the slow handler sleeps until started + 2
    assert sorted(e.event_id for e in fast.events) == sorted(e.event_id for e in sent)  # each once
    assert not slow_done.is_set()
    assert slow_done.wait(WAIT)
    running.stop()
    assert len(slow.calls) == 1 and len(fast.calls) == 100
    assert settled_count(env, queue, 0) == 0


def test_only_the_slow_message_and_those_after_it_come_back_when_the_connection_dies(
    env: EventEnv,
) -> None:
    """The acks of the messages handled before a slow one are sent while it runs, not held behind it.

    sync: handlers run one at a time, in order. The first handler takes 0.5 s, so the
    whole prefetch window (10) is in hand when it returns: the acks of the messages after
    it are held (5 at most), and those of n=5 and 6 are still held when the slow n=7
    starts; the keeper must send them when it takes over the connection. aio: the others
    run meanwhile and are acked one by one. Either way, a connection lost while the slow
    handler runs brings back only the slow message and those not handled yet.
    """
    queue = env.sink(["user.*"], "q")
    events = [("user.first", {"n": 0})]
    events += [("user.updated", {"n": n}) for n in range(1, 7)]
    events += [("user.slow", {"n": 7})]
    events += [("user.updated", {"n": n}) for n in range(8, 20)]
    env.pub.publish_many(events, exchange=env.exchange)
    first, slow, fast = Recorder(sleep=0.5), Slow(), Recorder()
    handlers = {"user.first": first, "user.slow": slow, "user.updated": fast}
    running = env.consume(queue, handlers, prefetch=10)
    slow.wait(1)
    started = slow.calls[0][2]
    if env.side == "sync":
        assert [e.data["n"] for e in first.events + fast.events] == list(range(7))  # in order, no further
    else:
        fast.wait(18)  # all of them, while the slow one runs
    assert slow.returned == []
    time.sleep(max(0.0, started + 0.6 - time.monotonic()))  # the keeper has the connection by now
    assert env.broker.close_connections(env.connection_name) >= 1
    handled_before = sorted(e.data["n"] for e in first.events + fast.events)
    assert slow.returned == [], "the slow handler returned before its connection was closed"
    slow.released.set()

    slow.wait(2)  # redelivered, on the new connection
    fast.wait(18)
    time.sleep(0.5)  # time for anything else to come back
    assert [e.event_id for e in slow.events] == [slow.events[0].event_id] * 2
    handled = Counter(e.data["n"] for e in first.events + fast.events)
    assert handled == Counter(n for n in range(20) if n != 7), (
        f"handled twice: {sorted(n for n, k in handled.items() if k > 1)}; "
        f"handled before the close: {handled_before}"
    )
    if env.side == "sync":  # the ones after the slow one, after it came back
        assert [e.data["n"] for e in fast.events] == [n for n in range(1, 20) if n != 7]
        assert all(c[2] > slow.calls[1][2] for c in fast.calls[6:])
    running.stop()
    assert settled_count(env, queue, 0) == 0


def test_prefetch_one_handles_every_event_exactly_once(env: EventEnv) -> None:
    queue = env.sink(["user.*"], "q")
    sent = env.pub.publish_many([("user.updated", {"n": n}) for n in range(30)], exchange=env.exchange)
    rec = Recorder()
    running = env.consume(queue, {"user.updated": rec}, prefetch=1)
    rec.wait(30)
    time.sleep(0.3)
    running.stop()
    assert [e.event_id for e in rec.events] == [e.event_id for e in sent]  # in order, each once
    assert settled_count(env, queue, 0) == 0
