"""Events when things go wrong: dropped connections, many threads, fork, nacks, timeouts, dead brokers."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import threading
import time
import warnings
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync
import svclink.testing

from ..events_support import RABBITMQ_URL, WAIT, EventEnv, Recorder, env_fixture, eventually
from ..faultproxy import FaultProxy

env = env_fixture()
rabbit_env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])
memory_env = env_fixture([("sync", "memory"), ("aio", "memory")])
sync_env = env_fixture([("sync", "rabbitmq"), ("sync", "memory")])
aio_env = env_fixture([("aio", "rabbitmq"), ("aio", "memory")])


def test_connections_closed_between_two_publishes_both_land_once(env: EventEnv) -> None:
    sink = env.sink(["user.*"])
    env.publish("user.updated", {"n": 1})
    assert env.broker.close_connections(env.connection_name) >= 1
    time.sleep(0.2)
    env.publish("user.updated", {"n": 2})
    assert env.broker.count(sink) == 2


def test_a_consumer_survives_its_connection_being_closed(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    running = env.consume(queue, {"user.updated": rec})
    env.publish("user.updated", {"n": 1})
    rec.wait(1)
    assert env.broker.close_connections(env.connection_name) >= 1
    eventually(lambda: env.broker.consumers(queue) >= 1, what="the consumer back on the queue")
    env.publish("user.updated", {"n": 2})
    eventually(lambda: 2 in [e.data["n"] for e in rec.events], what="the event published after the close")
    # at least once: n=1 comes again if its ack had not reached the broker when the connection closed
    assert {e.data["n"] for e in rec.events} == {1, 2}
    assert running.error is None and not running.returned.is_set()


def test_many_concurrent_publishes_are_all_confirmed(env: EventEnv) -> None:
    sink = env.sink(["load.*"])
    results = env.pub.publish_concurrently(500, "load.test", exchange=env.exchange)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert len({r.event_id for r in results}) == 500
    eventually(lambda: env.broker.count(sink) == 500, what="500 messages in the queue")


def test_publish_many_pipelines_and_reports_each_failure(env: EventEnv) -> None:
    sink = env.sink(["user.*"])
    events = env.pub.publish_many([("user.updated", {"i": i}) for i in range(50)], exchange=env.exchange)
    assert len(events) == 50 and len({e.event_id for e in events}) == 50
    assert env.broker.count(sink) == 50
    with pytest.raises(svclink.UnroutableError) as info:
        env.pub.publish_many(
            [("user.updated", {"i": 1}), ("order.paid", {}), ("user.created", {"i": 2})],
            exchange=env.exchange,
            unroutable="raise",
        )
    assert [e.event_type for e in info.value.published] == ["user.updated", "user.created"]
    assert [e.event_type for e, _ in info.value.failed] == ["order.paid"]
    assert env.broker.count(sink) == 52


def test_a_batch_that_fills_the_socket_lands_whole_and_in_order(rabbit_env: EventEnv) -> None:
    """A proxy stops reading what the publisher sends while it publishes 20 MB in one batch:
    the socket takes what fits, the connection keeps the rest until the socket drains, and
    every event lands, once, in the order published."""
    env = rabbit_env
    proxy = FaultProxy(5672)
    try:
        env.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", publish_timeout=30)
        sink = env.sink(["bulk.*"])
        publisher = env.publisher()
        publisher.publish("bulk.item", {"i": -1}, exchange=env.exchange)  # connected
        proxy.reading.clear()
        threading.Timer(0.5, proxy.reading.set).start()
        padding = "x" * 20_000
        batch = [("bulk.item", {"i": i, "pad": padding}) for i in range(1000)]
        events = publisher.publish_many(batch, exchange=env.exchange)
        assert [e.data["i"] for e in events] == list(range(1000))
        eventually(lambda: env.broker.count(sink) == 1001, what="1001 messages in the queue")
        got = [env.broker.get(sink) for _ in range(1001)]
        assert [json.loads(g.body)["data"]["i"] for g in got if g is not None] == list(range(-1, 1000))
    finally:
        proxy.reading.set()
        proxy.close()


def test_a_full_queue_that_rejects_publishes_raises_nacked(env: EventEnv) -> None:
    env.sink(["user.*"], arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    env.publish("user.updated", {"n": 1})
    with pytest.raises(svclink.PublishNacked):
        env.publish("user.updated", {"n": 2})


def test_a_publisher_is_usable_before_and_after_fork(sync_env: EventEnv) -> None:
    env = sync_env
    sink = env.sink(["user.*"])
    publisher = env.pub.publisher
    publisher.publish("user.updated", {"who": "parent-before"}, exchange=env.exchange)
    pid = os.fork()
    if pid == 0:  # the child: must open its own connection, never use the parent's socket
        code = 1
        try:
            publisher.publish("user.updated", {"who": "child"}, exchange=env.exchange)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    publisher.publish(
        "user.updated", {"who": "parent-after"}, exchange=env.exchange
    )  # parent's socket intact
    if env.broker.kind == "rabbitmq":
        assert env.broker.count(sink) == 3
    else:  # the child's memory broker was its own copy
        assert env.broker.count(sink) == 2


def test_get_publisher_is_shared_and_follows_settings(sync_env: EventEnv) -> None:
    env = sync_env
    first = svclink.sync.get_publisher()
    assert svclink.sync.get_publisher() is first
    env.sink(["user.*"])
    svclink.sync.get_publisher().publish("user.updated", {}, exchange=env.exchange)
    env.configure(publish_timeout=3)
    assert svclink.sync.get_publisher() is not first
    assert svclink.sync.get_publisher().settings.publish_timeout == 3
    first.close()
    svclink.sync.get_publisher().close()


def test_close_closes_the_publishers_connection_at_the_broker(env: EventEnv) -> None:
    sink = env.sink(["user.*"])
    env.publish("user.updated", {"n": 1})
    env.pub.close()
    assert env.broker.close_connections(env.connection_name) == 0  # none left for the broker to close
    env.publish("user.updated", {"n": 2})  # and the next publish opens a new one
    assert env.broker.count(sink) == 2


def test_the_connections_of_ended_threads_are_closed(sync_env: EventEnv) -> None:
    """Threads that published and ended (a request thread, say) do not leave connections open."""
    env = sync_env
    sink = env.sink(["user.*"])
    name = f"{env.connection_name}-threads"
    publisher = svclink.sync.Publisher(env.settings, connection_name=name)

    def publish(n: int) -> None:
        publisher.publish("user.updated", {"n": n}, exchange=env.exchange)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert env.broker.count(sink) == 4
    publish(4)  # this thread's own connection: the ended threads' are closed as it opens
    assert env.broker.close_connections(name) == 1
    publisher.close()


def test_an_unreachable_broker_raises_broker_unavailable(rabbit_env: EventEnv) -> None:
    env = rabbit_env
    env.configure(amqp_url="amqp://guest:guest@127.0.0.1:1/", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(svclink.BrokerUnavailable):
        env.publisher().publish("user.updated", {}, exchange=env.exchange)
    assert time.monotonic() - started < 5


def test_a_list_of_urls_fails_over_to_a_node_that_answers(rabbit_env: EventEnv) -> None:
    env = rabbit_env
    env.configure(amqp_url=["amqp://guest:guest@127.0.0.1:1/", RABBITMQ_URL], connect_timeout=1)
    rec = Recorder()
    env.consume(env.queue(), {"user.updated": rec})
    env.publisher().publish("user.updated", {"n": 1}, exchange=env.exchange)
    rec.wait(1)


def test_no_confirm_in_time_raises_publish_timeout(rabbit_env: EventEnv) -> None:
    """A proxy that starts holding the broker's replies: the confirm comes too late."""
    env = rabbit_env
    proxy = FaultProxy(5672)
    proxy.mode, proxy.delay = "delay", 0.0
    try:
        env.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        sink = env.sink(["user.*"])
        publisher = env.publisher()
        publisher.publish("user.updated", {"n": 1}, exchange=env.exchange)
        proxy.delay = 3.0
        started = time.monotonic()
        with pytest.raises(svclink.PublishTimeout):
            publisher.publish("user.updated", {"n": 2}, exchange=env.exchange, timeout=0.5)
        # at its deadline: not when the confirm comes (3 s), nor after closing the connection it gave up on
        assert time.monotonic() - started < 0.9
        proxy.delay = 0.0
        eventually(lambda: env.broker.count(sink) == 2)  # it did land: "may or may not have"
    finally:
        proxy.close()


def test_publishes_in_flight_together_each_fail_at_their_own_timeout(rabbit_env: EventEnv) -> None:
    """Twenty publishes at once, half with a short timeout, against a broker whose replies
    are held back: each fails at its own deadline. On aio they share one connection (and one
    timer): the short ones time out, and the connection they drop takes the long ones' confirms
    with it, which must come back as publish errors, never as a cancellation. On sync each thread
    opens its own connection, whose opening each publish's timeout bounds."""
    env = rabbit_env
    proxy = FaultProxy(5672)
    proxy.mode, proxy.delay = "delay", 0.0
    try:
        env.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        env.sink(["user.*"])
        publisher = env.publisher()
        publisher.publish("user.updated", {"n": 0}, exchange=env.exchange)  # connected: now hold replies
        proxy.delay = 5.0
        timeouts = [0.3, 3.0] * 10  # the long ones outlast the 2 s close of the connection dropped at 0.3
        results = publisher.publish_timed(timeouts, "user.updated", exchange=env.exchange)
        for timeout, (result, took) in zip(timeouts, results, strict=True):
            # no confirm in time (PublishTimeout), lost with a connection dropped for another's timeout and
            # not sent again in time (PublishError), or a new thread's connection not open in time
            assert isinstance(result, (svclink.PublishError, svclink.BrokerUnavailable)), result
            assert timeout - 0.05 <= took < timeout + 0.6, (timeout, took)
        if env.side == "aio":
            assert any(isinstance(r, svclink.PublishTimeout) for r, _ in results)
    finally:
        proxy.close()


def test_a_blocked_broker_fails_the_publish_at_its_timeout(memory_env: EventEnv) -> None:
    env = memory_env
    sink = env.sink(["user.*"])
    broker = svclink.testing.get_broker()
    broker.block()
    started = time.monotonic()
    with pytest.raises(svclink.PublishTimeout):
        env.publish("user.updated", {"n": 1}, timeout=0.3)
    assert time.monotonic() - started < 3.0
    broker.unblock()
    env.publish("user.updated", {"n": 2})
    # the timed-out publish's connection was dropped before the broker took the message
    assert [json.loads(m.body)["data"] for m in broker.messages(sink)] == [{"n": 2}]


def test_a_consumer_comes_back_when_its_queue_is_deleted(env: EventEnv) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"user.updated": rec}, bindings=["user.*"])
    env.broker.delete([queue], [])
    eventually(lambda: env.broker.consumers(queue) >= 1, what="the queue declared again")
    env.publish("user.updated", {"n": 1})
    rec.wait(1)


def test_a_sync_publisher_and_an_aio_consumer_share_the_memory_broker() -> None:
    import asyncio
    import threading

    import svclink.aio
    from svclink.core.context.value import bind, current

    svclink.configure(service_name="mixed", amqp_url="memory://")
    seen: list[tuple[object, str | None]] = []
    consumer = svclink.aio.EventConsumer("mixed.q", exchange="mixed.ex", retry_delays=[0.05], max_attempts=2)

    @consumer.on("user.*")
    async def handle(event: svclink.aio.Event) -> None:
        ctx = current()
        seen.append((event.data, ctx.request_id if ctx else None))
        if event.data == {"fail": True} and event.attempt == 1:
            raise RuntimeError("once")

    thread = threading.Thread(target=lambda: asyncio.run(consumer.run()), daemon=True)
    thread.start()
    try:
        broker = svclink.testing.get_broker()
        eventually(lambda: broker.queue_exists("mixed.q") and broker.consumer_count("mixed.q") == 1)
        with bind(request_id="req-mixed"):
            svclink.sync.get_publisher().publish("user.updated", {"n": 1}, exchange="mixed.ex")
        svclink.sync.get_publisher().publish("user.updated", {"fail": True}, exchange="mixed.ex")
        eventually(lambda: len(seen) == 3)
        assert seen[0] == ({"n": 1}, "req-mixed")
        assert [d for d, _ in seen[1:]] == [{"fail": True}, {"fail": True}]
    finally:
        consumer.stop()
        thread.join(8)
        svclink.sync.get_publisher().close()
        svclink.testing.reset()
    assert not thread.is_alive()


def test_a_consumer_comes_back_after_a_broker_outage(rabbit_env: EventEnv) -> None:
    """The consumer's route to the broker is cut and refused for a while, then restored."""
    env = rabbit_env
    proxy = FaultProxy(5672)
    try:
        # heartbeats of 1 s: the broker notices the dead route within a few seconds
        env.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", amqp_heartbeat=1)
        rec = Recorder()
        queue = env.queue()
        env.consume(queue, {"user.updated": rec})
        env.publish("user.updated", {"n": 1})  # published directly, not through the proxy
        rec.wait(1)
        proxy.mode = "reset"
        proxy.cut()
        eventually(lambda: env.broker.consumers(queue) == 0, what="the consumer cut off")
        env.publish("user.updated", {"n": 2})  # waits in the durable queue
        time.sleep(0.5)  # a few refused reconnects
        assert 2 not in [e.data["n"] for e in rec.events]
        proxy.mode = "pass"
        eventually(lambda: 2 in [e.data["n"] for e in rec.events], what="the event handled after the outage")
    finally:
        proxy.close()


def test_an_idle_publisher_outlives_missed_heartbeats(rabbit_env: EventEnv) -> None:
    """Idle, the publisher sends no heartbeats; the broker drops it; the next publish reopens, once."""
    env = rabbit_env
    env.configure(amqp_heartbeat=1)
    sink = env.sink(["user.*"])
    publisher = env.publisher()
    publisher.publish("user.updated", {"n": 1}, exchange=env.exchange)
    time.sleep(4)  # > 2 heartbeat intervals without a frame from us
    publisher.publish("user.updated", {"n": 2}, exchange=env.exchange)
    assert env.broker.count(sink) == 2


@pytest.mark.parametrize("batch", [1, 3], ids=["publish", "publish_many"])
def test_a_black_holed_broker_fails_the_publish_at_its_timeout(rabbit_env: EventEnv, batch: int) -> None:
    """The node accepts the TCP connection and never answers: the publish's timeout bounds the connect."""
    env = rabbit_env
    proxy = FaultProxy(5672)
    proxy.mode = "blackhole"
    try:
        env.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", connect_timeout=5)
        sink = env.sink(["user.*"])  # declared directly, not through the proxy
        publisher = env.publisher()
        started = time.monotonic()
        with pytest.raises((svclink.BrokerUnavailable, svclink.PublishTimeout)):
            if batch == 1:
                publisher.publish("user.updated", {"n": 0}, exchange=env.exchange, timeout=0.5)
            else:
                events = [("user.updated", {"n": n}) for n in range(batch)]
                publisher.publish_many(events, exchange=env.exchange, timeout=0.5)
        assert time.monotonic() - started < 3.0  # at its timeout, not after connect_timeout (5 s)
        proxy.mode = "pass"  # the node answers again: the next publish connects afresh
        publisher.publish("user.updated", {"n": "after"}, exchange=env.exchange)
        assert env.broker.count(sink) == 1
    finally:
        proxy.close()


def test_repeated_asyncio_runs_close_the_publishers_connection_each_time(
    aio_env: EventEnv, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One aio publisher used from three ``asyncio.run()`` in a row (a Celery task, a script)."""
    env = aio_env
    sink = env.sink(["user.*"])
    name = f"{env.connection_name}-runs"
    publisher = svclink.aio.Publisher(env.settings, connection_name=name)
    gc.collect()  # what earlier tests left behind is not this test's
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    caplog.set_level(logging.WARNING, logger="asyncio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(3):
            asyncio.run(publisher.publish("user.updated", {"n": n}, exchange=env.exchange))
        del publisher
        gc.collect()  # what the runs left behind is finalised now, not at exit
    eventually(lambda: env.broker.count(sink) == 3, what="3 events in the sink")
    assert env.broker.close_connections(name) == 0  # each run closed its connection as it ended
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert [f"{u.exc_type.__name__}: {u.exc_value}" for u in unraisable] == []


def test_the_reconnect_backoff_starts_over_after_each_reconnect(memory_env: EventEnv) -> None:
    """Lost eight times, each time after it came back: the 8th loss is retried as fast as the 1st."""
    env = memory_env
    queue = env.queue()
    rec = Recorder()
    env.consume(queue, {"user.updated": rec})
    took = 0.0
    for _ in range(8):
        started = time.monotonic()
        assert env.broker.close_connections(env.connection_name) >= 1
        eventually(lambda: env.broker.consumers(queue) >= 1, what="the consumer back")
        took = time.monotonic() - started
    assert took < 2.5  # a backoff that kept growing would wait 5 s before this reconnect
    env.publish("user.updated", {"n": 1})
    rec.wait(1)
