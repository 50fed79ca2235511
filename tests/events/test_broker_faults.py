"""Broker faults (issue 5, broker half): cut connections, outages, killed consumers, idle publishers.

Every case runs on both sides against the real RabbitMQ, with :class:`FaultProxy` in
front of it wherever a fault has to be caused; nothing here stops the broker itself.
"""

from __future__ import annotations

import json
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import svclink

from ..events_support import RABBITMQ_URL, WAIT, EventEnv, Recorder, SidePublisher, env_fixture, eventually
from ..faultproxy import FaultProxy

rabbit_env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    p = FaultProxy(5672)
    yield p
    p.close()


def through(env: EventEnv, proxy: FaultProxy, **overrides: object) -> None:
    """Point the scenario's later publishers and consumers at the broker through ``proxy``."""
    env.configure(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
        amqp_heartbeat=1,
        connect_timeout=1,
        **overrides,
    )


def drain(env: EventEnv, queue: str) -> list[tuple[Any, str]]:
    """Take every message out of ``queue``: ``(data["i"], event_id)`` of each, in queue order."""
    found = []
    while (got := env.broker.get(queue)) is not None:
        body = json.loads(got.body)
        found.append((body["data"].get("i"), body["event_id"]))
    return found


# -- 5. cuts during a stream of publishes -------------------------------------------------


@attrs.define
class Cutter:
    """Cuts every proxied connection when the publish stream reaches each of ``at``.

    It notes which publishes were current around each cut (from just before to just after
    it), so the test can tell the publishes a cut could have hit.
    """

    proxy: FaultProxy
    at: tuple[int, ...]
    #: after each cut, refuse new connections for this many publishes (a broker restarting)
    outage: int = 0
    current: int = -1
    hit: list[tuple[int, int]] = attrs.field(factory=list)
    done: threading.Event = attrs.field(factory=threading.Event)

    def run(self) -> None:
        for mark in self.at:
            while self.current < mark and not self.done.is_set():
                time.sleep(0.0005)
            if self.done.is_set():
                return
            time.sleep(0.001)  # into the middle of a publish, most likely waiting for its confirm
            first = self.current
            if self.outage:
                self.proxy.mode = "reset"
            self.proxy.cut()
            self.hit.append((first, self.current))
            if self.outage:
                while self.current < mark + self.outage and not self.done.is_set():
                    time.sleep(0.0005)
                self.proxy.mode = "pass"


def publish_stream(
    env: EventEnv, publisher: SidePublisher, cutter: Cutter, sent: int, batch: int
) -> tuple[set[int], dict[int, Exception]]:
    """Publish events ``{"i": 0}`` to ``{"i": sent - 1}``, one by one or ``batch`` at a time with
    ``publish_many``; which returned normally, and what each of the others raised."""
    returned: set[int] = set()
    raised: dict[int, Exception] = {}
    try:
        for first in range(0, sent, batch):
            cutter.current = first
            numbers = range(first, min(first + batch, sent))
            try:
                if batch == 1:
                    publisher.publish("load.test", {"i": first}, exchange=env.exchange)
                else:
                    publisher.publish_many([("load.test", {"i": i}) for i in numbers], exchange=env.exchange)
                returned.update(numbers)
            except svclink.PublishError as exc:
                if exc.failed:  # publish_many says which were confirmed and which were not
                    returned.update(e.data["i"] for e in exc.published)
                    raised.update((e.data["i"], err) for e, err in exc.failed)
                else:
                    raised[first] = exc
            except svclink.BrokerUnavailable as exc:
                raised.update((i, exc) for i in numbers)
    finally:
        cutter.done.set()
    return returned, raised


@pytest.mark.parametrize("batch", [1, 10], ids=["publish", "publish_many"])
@pytest.mark.parametrize("outage", [0, 3], ids=["cuts", "restarts"])
def test_cuts_during_a_stream_of_publishes_lose_nothing_that_returned(
    rabbit_env: EventEnv, proxy: FaultProxy, outage: int, batch: int
) -> None:
    """300 publishes while every connection is cut six times (and, for "restarts", new ones
    are refused for the next three calls).

    A publish that returned is in the queue; BrokerUnavailable means nothing was sent; a
    duplicate (same event id) or a publish left in doubt (PublishError: it may or may not
    have landed) only comes from a publish a cut hit, never more than two copies.
    """
    env = rabbit_env
    sink = env.sink(["load.*"])
    through(env, proxy, publish_timeout=3)
    sent = 300
    cutter = Cutter(proxy, at=(30, 80, 130, 180, 230, 280), outage=outage * batch)
    thread = threading.Thread(target=cutter.run, daemon=True)
    thread.start()
    returned, raised = publish_stream(env, env.publisher(), cutter, sent, batch)
    thread.join(WAIT)
    landed = drain(env, sink)
    copies = Counter(i for i, _ in landed)
    assert all(len({e for i, e in landed if i == n}) == 1 for n in copies), "a copy with another event id"
    unavailable = {i for i, e in raised.items() if isinstance(e, svclink.BrokerUnavailable)}
    in_doubt = set(raised) - unavailable
    # a cut can hit the call under way, or the next one (before it sees the connection gone)
    hit = {i for first, last in cutter.hit for i in range(first, min(last + 2 * batch, sent))}
    duplicates = {i for i, n in copies.items() if n > 1}
    print(  # the figures, for pytest -s
        f"\n{env.side}/{outage}/{batch}: sent={sent} returned={len(returned)} raised={len(raised)}"
        f" (BrokerUnavailable={len(unavailable)}, in doubt={len(in_doubt)}) landed={copies.total()}"
        f" distinct={len(copies)} duplicates={len(duplicates)} in-doubt-landed={len(in_doubt & set(copies))}"
    )
    assert len(cutter.hit) == len(cutter.at)
    assert len(returned) + len(raised) == sent and not returned & set(raised)
    assert returned <= set(copies), "a publish that returned normally is missing from the queue"
    assert set(copies) <= set(range(sent))
    assert max(copies.values()) <= 2, "more than the one resend"
    assert duplicates <= hit, "a duplicate of a publish no cut could have hit"
    assert not unavailable & set(copies), "BrokerUnavailable for a message that was sent"
    assert in_doubt <= hit, "a publish no cut could have hit ended in doubt"
    assert len(copies) == len(returned) + len(in_doubt & set(copies))


# -- 6. a broker "restart" under a running consumer -----------------------------------------


@pytest.mark.parametrize("down", ["refused", "blackholed"])
def test_a_consumer_resumes_after_a_restart_and_redoes_the_message_in_hand(
    rabbit_env: EventEnv, proxy: FaultProxy, down: str
) -> None:
    """Cut under a handler, then refuse (or black-hole) new connections for a second, then restore.

    The handler in hand finishes on a dead channel (its ack cannot reach the broker); the
    message comes again and is handled again, and everything published before, during and
    after the outage is handled, with nothing left in the queue.
    """
    env = rabbit_env
    through(env, proxy)
    queue = env.queue()
    rec, slow = Recorder(), Recorder(sleep=1.0)
    running = env.consume(queue, {"user.*": rec, "slow.*": slow}, bindings=["user.*", "slow.*"])
    for n in (1, 2, 3):
        env.publish("user.updated", {"n": n})  # env.publish goes to the broker directly
    rec.wait(3)
    job = env.publish("slow.job", {})
    slow.wait(1)  # its handler is now sleeping
    proxy.mode = "reset" if down == "refused" else "blackhole"
    assert proxy.cut() >= 1
    eventually(lambda: env.broker.consumers(queue) == 0, what="the consumer cut off")
    before = proxy.accepted
    for n in (4, 5, 6):
        env.publish("user.updated", {"n": n})
    # the handler finishes on the dead channel, then the consumer tries to reconnect: refused or hanging
    eventually(lambda: proxy.accepted > before, what="a reconnect during the outage")
    time.sleep(0.5)
    assert not {4, 5, 6} & {e.data["n"] for e in rec.events}
    proxy.mode = "pass"
    for n in (7, 8, 9):
        env.publish("user.updated", {"n": n})
    eventually(
        lambda: running.error or {e.data["n"] for e in rec.events} == set(range(1, 10)), what="every event"
    )
    assert running.error is None and not running.returned.is_set()
    calls = slow.wait(2)
    assert [e.event_id for e in calls] == [job.event_id] * 2, "the message in hand handled again"
    eventually(lambda: env.broker.count(queue) == 0, what="an empty queue")
    running.stop()
    assert env.broker.count(queue) == 0, "something was never acked"
    assert env.broker.count(f"{queue}.dead") == 0


# -- 7. a consumer killed in the middle of a message ---------------------------------------

#: a consumer process whose handler says which event it is handling, then sleeps "forever"
CHILD = """
import asyncio, sys, time
import svclink, svclink.aio, svclink.sync

side, url, queue, exchange, name = sys.argv[1:]
svclink.configure(service_name="doomed", amqp_url=url, amqp_heartbeat=1, connect_timeout=1)
module = svclink.sync if side == "sync" else svclink.aio
consumer = module.EventConsumer(queue, exchange=exchange, bindings=["job.*"], connection_name=name)
print("ready", flush=True)
if side == "sync":
    @consumer.on("job.*")
    def handle(event):
        print("handling", event.event_id, flush=True)
        time.sleep(60)
    consumer.run()
else:
    @consumer.on("job.*")
    async def handle(event):
        print("handling", event.event_id, flush=True)
        await asyncio.sleep(60)
    asyncio.run(consumer.run())
"""


class Child:
    """A consumer in a subprocess of its own, with its output lines readable with a timeout."""

    def __init__(self, env: EventEnv, queue: str) -> None:
        args = [env.side, RABBITMQ_URL, queue, env.exchange, env.connection_name + ".child"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True
        )
        self.lines: queue_module.Queue[str] = queue_module.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def line(self, timeout: float = WAIT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue_module.Empty:
            code = self.process.poll()
            raise AssertionError(f"the child said nothing in {timeout}s (exit code {code})") from None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)


def test_a_consumer_killed_mid_message_has_it_redelivered_to_the_next(rabbit_env: EventEnv) -> None:
    env = rabbit_env
    queue = env.queue()
    rec = Recorder()
    env.consumer(queue, {"job.*": rec}, bindings=["job.*"])  # names its retry and dead queues for cleanup
    child = Child(env, queue)
    try:
        assert child.line() == "ready"
        eventually(lambda: env.broker.consumers(queue) == 1, what="the child consuming")
        job = env.publish("job.run", {"n": 1})
        assert child.line() == f"handling {job.event_id}"
        other = env.publish("job.run", {"n": 2})  # prefetched by the child (or in a second handler)
        eventually(lambda: env.broker.count(queue) == 0, what="the second job with the child")
        child.kill()
    finally:
        if child.process.poll() is None:
            child.kill()
    assert child.process.returncode == -signal.SIGKILL
    running = env.consume(queue, {"job.*": rec}, bindings=["job.*"])
    rec.wait(2)
    running.stop()
    assert env.broker.count(queue) == 0
    assert sorted(e.event_id for e in rec.events) == sorted([job.event_id, other.event_id])


# -- 8. an idle publisher (see also test_events_faults.test_an_idle_publisher_outlives_missed_heartbeats)


def test_an_idle_publisher_reconnects_and_lands_exactly_one_copy(
    rabbit_env: EventEnv, proxy: FaultProxy
) -> None:
    """Idle past two heartbeat intervals, the broker drops the publisher; the next publish opens a
    second connection (counted at the proxy) and lands once."""
    env = rabbit_env
    sink = env.sink(["user.*"])
    through(env, proxy)
    publisher = env.publisher()
    first = publisher.publish("user.updated", {"n": 1}, exchange=env.exchange)
    assert proxy.accepted == 1
    time.sleep(4)  # no I/O from the publisher meanwhile, so no heartbeats: the broker closes it
    second = publisher.publish("user.updated", {"n": 2}, exchange=env.exchange)
    assert proxy.accepted == 2, "the idle connection was not replaced"
    assert Counter(e for _, e in drain(env, sink)) == {first.event_id: 1, second.event_id: 1}
