"""The memory:// broker's own RabbitMQ behaviours, driven directly (the scenarios cover the rest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import svclink.testing
from svclink.core.events.message import OutgoingMessage, Properties
from svclink.testing import MemoryBroker, MemoryBrokerError, MemoryDelivery

from ..events_support import eventually


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    yield MemoryBroker("unit")


def _message(exchange: str, key: str, body: bytes = b"x", mandatory: bool = True) -> OutgoingMessage:
    return OutgoingMessage(exchange, key, body, Properties(headers={"h": "v"}), mandatory=mandatory)


def test_mandatory_returns_and_plain_drops(broker: MemoryBroker) -> None:
    c = broker.connect("c")
    broker.declare_exchange(c, "ex")
    assert broker.publish(c, _message("ex", "a.b")).wait(1) == "returned"
    assert broker.publish(c, _message("ex", "a.b", mandatory=False)).wait(1) == "ack"


def test_ttl_dead_letters_back_through_the_default_exchange(broker: MemoryBroker) -> None:
    c = broker.connect("c")
    broker.declare_queue(c, "work")
    ttl = {"x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "work"}
    broker.declare_queue(c, "delay", ttl)
    started = time.monotonic()
    assert broker.publish(c, _message("", "delay", b"later")).wait(1) == "ack"
    assert broker.message_count("delay") == 1
    eventually(lambda: broker.message_count("work") == 1, timeout=3)
    assert time.monotonic() - started >= 0.09
    [moved] = broker.messages("work")
    assert moved.body == b"later" and moved.routing_key == "work"
    assert moved.headers["x-death"][0]["queue"] == "delay" and moved.headers["h"] == "v"


def test_time_scale_shortens_ttls_and_dead_letter_exchanges_route(broker: MemoryBroker) -> None:
    broker.time_scale = 0.001  # a minute of TTL in 60 ms
    c = broker.connect("c")
    broker.declare_exchange(c, "dlx", "fanout")
    broker.declare_queue(c, "work")
    broker.bind_queue(c, "work", "dlx", "")
    broker.declare_queue(c, "delay", {"x-message-ttl": 60_000, "x-dead-letter-exchange": "dlx"})
    broker.publish(c, _message("", "delay"))
    eventually(lambda: broker.message_count("work") == 1, timeout=3)


def test_prefetch_ack_nack_and_requeue_on_close(broker: MemoryBroker) -> None:
    c = broker.connect("consumer")
    broker.declare_queue(c, "q")
    for i in range(3):
        broker.publish(c, _message("", "q", str(i).encode()))
    got: list[MemoryDelivery] = []
    tag = broker.consume(c, "q", got.append, prefetch=2)
    assert [d.message.body for d in got] == [b"0", b"1"]  # the third waits for room
    broker.ack(c, tag, got[0].delivery_tag)
    assert [d.message.body for d in got] == [b"0", b"1", b"2"]
    broker.nack(c, tag, got[1].delivery_tag, requeue=True)
    assert got[3].message.body == b"1" and got[3].redelivered
    assert broker.close_connections("consumer") == 1  # unacked "2" and "1" go back, redelivered
    assert broker.message_count("q") == 2
    c2 = broker.connect("again")
    again: list[MemoryDelivery] = []
    broker.consume(c2, "q", again.append)
    assert all(d.redelivered for d in again) and len(again) == 2
    with pytest.raises(svclink.testing.ConnectionClosed):
        broker.publish(c, _message("", "q"))


def test_declaring_differently_is_a_precondition_failure(broker: MemoryBroker) -> None:
    c = broker.connect("c")
    broker.declare_queue(c, "q", {"x-queue-type": "quorum"})
    with pytest.raises(MemoryBrokerError) as info:
        broker.declare_queue(c, "q")
    assert info.value.code == 406
    broker.declare_exchange(c, "ex", "topic")
    with pytest.raises(MemoryBrokerError):
        broker.declare_exchange(c, "ex", "fanout")


def test_blocked_broker_holds_confirms_until_unblocked(broker: MemoryBroker) -> None:
    c = broker.connect("c")
    broker.declare_queue(c, "q")
    broker.block()
    confirm = broker.publish(c, _message("", "q"))
    assert confirm.wait(0.1) is None and broker.message_count("q") == 0
    threading.Timer(0.1, broker.unblock).start()
    assert confirm.wait(3) == "ack" and broker.message_count("q") == 1


def test_brokers_are_per_url_and_reset_forgets_them() -> None:
    default = svclink.testing.get_broker("memory://")
    assert svclink.testing.get_broker() is default
    assert svclink.testing.get_broker("memory://other") is not default
    svclink.testing.reset()
    assert svclink.testing.get_broker() is not default
