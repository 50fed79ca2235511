"""Broker faults (issue 5, broker half): cut connections, outages, killed consumers, idle publishers.

Every case runs on both sides against the real RabbitMQ, with :class:`FaultProxy` in
front of it wherever a fault has to be caused; nothing here stops the broker itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import attrs
import pytest

import svclink

from .events_support import EventEnv, env_fixture
from .faultproxy import FaultProxy

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


def drain(env: EventEnv, queue: str) -> list[str]:
    """Take every message out of ``queue``; the event id of each, in queue order."""
    ids = []
    while (got := env.broker.get(queue)) is not None:
        ids.append(str(got.headers["x-event-id"]))
    return ids


# -- 5. cuts during a stream of publishes -------------------------------------------------


@attrs.define
class Cutter:
    """Cuts every proxied connection when the publish stream reaches each of ``at``.

    It notes which publish was current at each cut (the one under way, or the one that had
    just returned), so the test can tell the publishes a cut could have hit.
    """

    proxy: FaultProxy
    at: tuple[int, ...]
    #: after each cut, refuse new connections for this many publishes (a broker restarting)
    outage: int = 0
    current: int = -1
    hit: list[int] = attrs.field(factory=list)
    done: threading.Event = attrs.field(factory=threading.Event)

    def run(self) -> None:
        for mark in self.at:
            while self.current < mark and not self.done.is_set():
                time.sleep(0.0005)
            if self.done.is_set():
                return
            time.sleep(0.001)  # into the middle of a publish, most likely waiting for its confirm
            self.hit.append(self.current)
            if self.outage:
                self.proxy.mode = "reset"
            self.proxy.cut()
            if self.outage:
                while self.current < mark + self.outage and not self.done.is_set():
                    time.sleep(0.0005)
                self.proxy.mode = "pass"


@pytest.mark.parametrize("outage", [0, 5], ids=["cuts", "restarts"])
def test_cuts_during_a_stream_of_publishes_lose_nothing_that_returned(
    rabbit_env: EventEnv, proxy: FaultProxy, outage: int
) -> None:
    env = rabbit_env
    sink = env.sink(["load.*"])
    through(env, proxy, publish_timeout=3)
    publisher = env.publisher()
    sent = 300
    ids = [f"{env.id}-{i}-{uuid.uuid4().hex[:6]}" for i in range(sent)]
    cutter = Cutter(proxy, at=(30, 80, 130, 180, 230, 280), outage=outage)
    thread = threading.Thread(target=cutter.run, daemon=True)
    thread.start()
    returned: set[str] = set()
    raised: dict[str, Exception] = {}
    try:
        for i, event_id in enumerate(ids):
            cutter.current = i
            try:
                publisher.publish("load.test", {"i": i}, exchange=env.exchange, event_id=event_id)
                returned.add(event_id)
            except (svclink.PublishError, svclink.BrokerUnavailable) as exc:
                raised[event_id] = exc
    finally:
        cutter.done.set()
        thread.join(5)
    copies = Counter(drain(env, sink))
    duplicates = {i for i, n in copies.items() if n > 1}
    unavailable = {i for i, e in raised.items() if isinstance(e, svclink.BrokerUnavailable)}
    in_doubt = set(raised) - unavailable
    near_cut = {ids[j] for h in cutter.hit for j in (h, h + 1) if j < sent}
    print(
        f"\n{env.side}/{outage}: sent={sent} returned={len(returned)} raised={len(raised)}"
        f" (unavailable={len(unavailable)}, in doubt={len(in_doubt)}: {Counter(type(e).__name__ for e in raised.values())})"
        f" landed={copies.total()} distinct={len(copies)} duplicates={len(duplicates)}"
        f" in-doubt-landed={len(in_doubt & set(copies))} cuts at {cutter.hit}"
    )
    assert len(cutter.hit) == len(cutter.at)
    assert len(returned) + len(raised) == sent
    assert returned <= set(copies), "a publish that returned normally is missing from the queue"
    assert set(copies) <= set(ids)
    assert max(copies.values()) <= 2, "more than the one resend"
    assert duplicates <= near_cut, "a duplicate of a publish no cut could have hit"
    assert not unavailable & set(copies), "BrokerUnavailable for a message that was sent"
    assert in_doubt <= near_cut, "a publish no cut could have hit ended in doubt"
    assert len(copies) == len(returned) + len(in_doubt & set(copies))
