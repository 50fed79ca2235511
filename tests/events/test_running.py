"""Running consumers: concurrency, a stop's grace, and handler time limits, on both sides and brokers."""

from __future__ import annotations

import threading
import time

import pytest

import svclink
from svclink.core.events.envelope import Event

from ..events_support import WAIT, EventEnv, Recorder, env_fixture, eventually

env = env_fixture()


class Gauge(Recorder):
    """Records like :class:`Recorder` and the most handlers it saw running at once."""

    def __init__(self, sleep: float) -> None:
        super().__init__(sleep=sleep)
        self.running = 0
        self.peak = 0
        self.finished: list[int] = []
        self._count = threading.Lock()

    def _enter(self) -> None:
        with self._count:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def _leave(self, event: Event) -> None:
        with self._count:
            self.running -= 1
            self.finished.append(event.data["n"])

    def sync(self, event: Event) -> None:
        self._enter()
        try:
            super().sync(event)
        finally:
            self._leave(event)

    async def aio(self, event: Event) -> None:
        self._enter()
        try:
            await super().aio(event)
        finally:
            self._leave(event)


def test_concurrency_runs_that_many_handlers_at_once_and_no_more(env: EventEnv) -> None:
    queue = env.queue()
    gauge = Gauge(sleep=0.3)
    env.consume(queue, {"job.run": gauge}, concurrency=4)
    env.pub.publish_many([("job.run", {"n": n}) for n in range(12)], exchange=env.exchange)
    eventually(lambda: len(gauge.finished) == 12, what="12 handled")
    assert gauge.peak == 4
    assert sorted(gauge.finished) == list(range(12))
    time.sleep(0.3)
    assert env.broker.count(queue) == 0


def test_prefetch_is_sized_to_the_concurrency(env: EventEnv) -> None:
    consumer = env.consumer(env.queue(), {"job.run": Recorder()}, concurrency=30)
    assert consumer.config.prefetch == 30  # the prefetch_count setting (10) raised to match
    with pytest.raises(svclink.InvalidEvent, match=r"prefetch \(5\) must be at least concurrency \(8\)"):
        env.consumer(env.queue("other"), {"job.run": Recorder()}, concurrency=8, prefetch=5)
    for bad in (0, -1, 1001, 2.5, True, "4"):
        with pytest.raises(svclink.InvalidEvent, match="concurrency must be"):
            env.consumer(env.queue("bad"), {"job.run": Recorder()}, concurrency=bad)
    for field in ("handler_timeout", "grace"):
        with pytest.raises(svclink.InvalidEvent, match=f"{field} must be a positive number"):
            env.consumer(env.queue("bad"), {"job.run": Recorder()}, **{field: 0})


def test_stop_finishes_the_handlers_in_flight_and_gives_back_the_rest(env: EventEnv) -> None:
    queue = env.queue()
    gauge = Gauge(sleep=0.5)
    running = env.consume(queue, {"job.run": gauge}, concurrency=3, grace=10)
    env.pub.publish_many([("job.run", {"n": n}) for n in range(10)], exchange=env.exchange)
    eventually(lambda: gauge.running == 3, what="3 handlers running")
    started = len(gauge.calls)
    running.stop()
    assert gauge.running == 0 and sorted(gauge.finished) == sorted(e.data["n"] for e in gauge.events)
    assert len(gauge.finished) == started == 3  # nothing started after the stop
    eventually(lambda: env.broker.count(queue) == 7, what="the 7 others back in the queue")
    assert env.broker.count(queue + ".dead") == 0


@pytest.mark.parametrize("how", ["grace", "second stop"])
def test_handlers_over_the_grace_are_abandoned_and_their_messages_come_back_unhandled(
    env: EventEnv, how: str
) -> None:
    queue = env.queue()
    slow = Gauge(sleep=4.0)
    grace = 0.5 if how == "grace" else 30.0
    running = env.consume(queue, {"job.run": slow}, concurrency=2, grace=grace)
    env.pub.publish_many([("job.run", {"n": n}) for n in range(2)], exchange=env.exchange)
    eventually(lambda: slow.running == 2, what="2 handlers running")
    stopped = time.monotonic()
    running.consumer.stop()
    if how == "second stop":
        time.sleep(0.2)
        assert not running.returned.is_set()  # draining
        running.consumer.stop()
    assert running.returned.wait(WAIT) and running.error is None
    assert time.monotonic() - stopped < 3.0  # not the handlers' 4 s
    eventually(lambda: env.broker.count(queue) == 2, what="both messages back in the queue")
    assert env.broker.count(queue + ".dead") == 0
    again = Recorder()
    env.consume(queue, {"job.run": again}, concurrency=2)
    assert sorted(e.attempt for e in again.wait(2)) == [1, 1]  # no attempt counted


@pytest.mark.parametrize("concurrency", [None, 3])
def test_a_handler_over_handler_timeout_is_retried_then_dead_lettered(
    env: EventEnv, concurrency: int | None
) -> None:
    queue = env.queue()
    stuck = Recorder(sleep=2.0)
    fine = Recorder()
    env.consume(
        queue, {"job.stuck": stuck, "job.fine": fine}, concurrency=concurrency, handler_timeout=0.3,
        max_attempts=2, retry_delays=[0.2],
    )  # fmt: skip
    env.publish("job.stuck", {"n": 1})
    stuck.wait(2, timeout=WAIT)  # the first attempt timed out and came back
    assert [e.attempt for e in stuck.events] == [1, 2]
    dead = eventually(lambda: env.broker.get(queue + ".dead"), what="dead-lettered")
    assert dead.headers["x-svclink-dead-reason"] == "max-attempts"
    assert (
        dead.headers["x-svclink-error"]
        == "HandlerTimeout: the handler ran longer than handler_timeout (0.3s)"
    )
    env.publish("job.fine", {"n": 2})  # the consumer goes on (sync, one at a time: after the stuck one)
    fine.wait(1, timeout=WAIT)
    assert env.broker.count(queue) == 0


def test_stop_before_run_and_consuming_flag(env: EventEnv) -> None:
    queue = env.queue()
    consumer = env.consumer(queue, {"job.run": Recorder()})
    assert not consumer.consuming and consumer.state.value == "stopped"
    running = env.start(consumer)
    eventually(lambda: consumer.consuming, what="consuming")
    running.stop()
    assert consumer.state.value == "stopped"
