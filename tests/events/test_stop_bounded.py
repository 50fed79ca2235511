"""``stop()`` is bounded: ``run()`` returns in a known time even when the broker does not answer.

A private node is frozen (SIGSTOP: its sockets stay open, nothing answers) while a
consumer consumes; after ``stop()``, ``run()`` must return within the documented bound
(the handler in hand, then ``connect_timeout`` for each step that waits for the broker),
abandoning the connection. The message whose ack could not be sent goes back to the
queue once the node runs again and sees the connection closed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

import svclink
import svclink.aio
import svclink.sync
from svclink.core.events.envelope import Event

from ..events_support import WAIT, Running, eventually
from ..rabbit_node import RabbitNode, private_node

#: connect_timeout in these tests: each step of a stop waits this long for the broker at most
STEP = 1.0


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    with private_node() as started:
        yield started


def _queue(node: RabbitNode, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of ``queue`` on ``node``."""
    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        method = connection.channel().queue_declare(queue, passive=True).method
        return int(method.message_count), int(method.consumer_count)
    finally:
        connection.close()


def _publish(node: RabbitNode, exchange: str) -> None:
    publisher = svclink.sync.Publisher(svclink.get_settings())
    try:
        publisher.publish("user.updated", {"n": 1}, exchange=exchange)
    finally:
        publisher.close()


@pytest.mark.parametrize("side", ["sync", "aio"])
@pytest.mark.parametrize("where", ["handling", "idle", "starting"])
def test_run_returns_in_bounded_time_after_stop_when_the_broker_is_frozen(
    node: RabbitNode, side: str, where: str
) -> None:
    run_id = uuid.uuid4().hex[:8]
    exchange, queue = f"test.stop.{run_id}", f"test.stop.{run_id}"
    svclink.configure(
        service_name="stop-test",
        amqp_url=node.url,
        connect_timeout=STEP,
        amqp_heartbeat=60,
        consumer_grace=30,
    )
    module: Any = svclink.sync if side == "sync" else svclink.aio
    consumer = module.EventConsumer(queue, exchange=exchange)
    started, frozen = threading.Event(), threading.Event()

    def handle(_event: Event) -> None:
        started.set()
        frozen.wait(WAIT)

    async def handle_async(event: Event) -> None:
        await __import__("asyncio").to_thread(handle, event)

    consumer.on("user.*")(handle if side == "sync" else handle_async)
    if where == "starting":  # the broker freezes before the consumer connects and declares
        node.pause()
    running = Running(consumer, side)
    if where != "starting":
        assert eventually(lambda: consumer.consuming, what="the consumer consuming")
    if where == "handling":
        _publish(node, exchange)
        assert started.wait(WAIT)
    node.pause()
    try:
        frozen.set()  # the handler returns: its ack cannot reach the broker
        time.sleep(0.3)
        asked = time.monotonic()
        consumer.stop()
        running.thread.join(30)
        took = time.monotonic() - asked
        assert not running.thread.is_alive(), "run() did not return after stop()"
    finally:
        node.resume()
    print(f"{side} {where}: run() returned {took:.2f}s after stop()")
    assert took < 3 * STEP + 2.0, f"run() took {took:.1f}s to return after stop()"
    assert running.error is None
    if where == "starting":
        return
    # the connection is closed, not left to the heartbeat: the broker drops its consumer at once
    # (and would put back an unacked message); the handled one was acked or is back, never lost
    eventually(lambda: _queue(node, queue) in ((0, 0), (1, 0)), timeout=10, what="the consumer gone")
