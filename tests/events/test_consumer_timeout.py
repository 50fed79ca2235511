"""handler_timeout against a broker with a short ``consumer_timeout``: the channel is never closed.

A private RabbitMQ node closes a channel whose delivery stays unacknowledged for 2 s (and
checks every 0.5 s). A handler that runs 4 s under ``handler_timeout=0.5`` is settled as
failed long before, retried, then dead-lettered, while the events queued behind it are
handled once each and the connection stays up. Without a low enough ``handler_timeout``,
the broker closes the channel and the log names its ``consumer_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
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

from ..events_support import eventually
from ..rabbit_node import RabbitNode, private_node


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    with private_node(
        config=["consumer_timeout = 2000"], advanced="{rabbit, [{channel_tick_interval, 500}]}"
    ) as n:
        yield n


def run_consumer(side: str, consumer: Any) -> threading.Thread:
    target = consumer.run if side == "sync" else lambda: asyncio.run(consumer.run())
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    eventually(lambda: consumer.consuming, 20, "consuming")
    return thread


def make(side: str, node: RabbitNode, handled: list[tuple[str, int]], **kwargs: Any) -> Any:
    settings = svclink.configure(amqp_url=node.url, service_name="timeout-test")
    queue = f"test.timeout.{uuid.uuid4().hex[:8]}"
    module = svclink.sync if side == "sync" else svclink.aio
    consumer = module.EventConsumer(queue, exchange=queue, settings=settings, **kwargs)

    def note(event: Any) -> float:
        handled.append((event.event_type, event.attempt))
        return 4.0 if event.event_type == "job.stuck" else 0.0

    if side == "sync":
        consumer.on("job.*")(lambda event: time.sleep(note(event)))
    else:

        async def handle(event: Any) -> None:
            await asyncio.sleep(note(event))

        consumer.on("job.*")(handle)
    return consumer


def publish(node: RabbitNode, exchange: str, *types: str) -> None:
    with svclink.sync.Publisher(svclink.get_settings()) as publisher:
        for n, event_type in enumerate(types):
            publisher.publish(event_type, {"n": n}, exchange=exchange)


def dead_letters(node: RabbitNode, queue: str) -> list[dict[str, Any]]:
    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    channel = connection.channel()
    found = []
    while True:
        method, props, _body = channel.basic_get(queue + ".dead", auto_ack=True)
        if method is None:
            break
        found.append(dict(props.headers or {}))
    connection.close()
    return found


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("side", "concurrency"), [("sync", None), ("sync", 2), ("aio", None), ("aio", 2)])
def test_a_handler_over_handler_timeout_is_retried_then_dead_lettered_and_the_channel_stays_open(
    node: RabbitNode, side: str, concurrency: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[tuple[str, int]] = []
    consumer = make(
        side, node, handled, handler_timeout=0.5, max_attempts=2, retry_delays=[0.1], concurrency=concurrency
    )
    with caplog.at_level(logging.WARNING, "svclink.events"):
        thread = run_consumer(side, consumer)
        publish(node, consumer.config.exchange, "job.stuck", "job.fine", "job.fine", "job.fine")
        dead = eventually(
            lambda: dead_letters(node, consumer.config.queue), 30, "the stuck event dead-lettered"
        )
        time.sleep(4.5)  # the last stuck handler returns; anything the broker closed would show by now
        consumer.stop()
        thread.join(15)
    assert [h["x-svclink-error"] for h in dead] == [
        "HandlerTimeout: the handler ran longer than handler_timeout (0.5s)"
    ]
    assert sorted(handled) == [("job.fine", 1)] * 3 + [("job.stuck", 1), ("job.stuck", 2)]  # each once
    logged = caplog.text
    assert "consumer_timeout" not in logged and "PRECONDITION_FAILED" not in logged


@pytest.mark.timeout(120)
@pytest.mark.parametrize("side", ["sync", "aio"])
def test_without_a_low_handler_timeout_the_log_names_the_brokers_consumer_timeout(
    node: RabbitNode, side: str, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[tuple[str, int]] = []
    consumer = make(side, node, handled, handler_timeout=60, concurrency=2)
    with caplog.at_level(logging.WARNING, "svclink.events"):
        thread = run_consumer(side, consumer)
        publish(node, consumer.config.exchange, "job.stuck")
        eventually(lambda: "consumer_timeout" in caplog.text, 20, "the channel closed for consumer_timeout")
        consumer.stop()
        consumer.stop()
        thread.join(15)
    line = next(r.getMessage() for r in caplog.records if "consumer_timeout" in r.getMessage())
    assert "delivery acknowledgement" in line and "handler_timeout" in line
