"""svclink and the other RabbitMQ clients of a fleet, each used with its defaults: FastStream's
``RabbitBroker`` and kombu's ``Producer``/``Consumer``, in both directions, on both sides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kombu
import pytest
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

from svclink.core.context.value import bind

from ..events_support import RABBITMQ_URL, EventEnv, Recorder, env_fixture, eventually
from ..fleet_code import LoopThread

rabbit_env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


# -- FastStream ------------------------------------------------------------------------------


def test_faststream_publishes_reach_svclink_handlers(rabbit_env: EventEnv, loop: LoopThread) -> None:
    rec = Recorder()
    queue = rabbit_env.queue()
    rabbit_env.consume(queue, {"user.*": rec})

    async def publish() -> None:
        async with RabbitBroker(RABBITMQ_URL) as broker:
            exchange = RabbitExchange(rabbit_env.exchange, type=ExchangeType.TOPIC)
            await broker.publish(
                {"user_id": 5, "changes": {"name": "b"}},
                exchange=exchange,
                routing_key="user.updated",
                headers={"X-Request-ID": "req-from-faststream"},
            )

    loop.run(publish())
    rec.wait(1)
    [(event, request_id, _)] = rec.calls
    assert event.event_type == "user.updated" and event.format == "foreign"
    assert event.data == {"user_id": 5, "changes": {"name": "b"}}
    assert request_id == "req-from-faststream"
    assert rabbit_env.broker.count(queue + ".dead") == 0


def test_faststream_subscribers_read_svclink_flat_events(rabbit_env: EventEnv, loop: LoopThread) -> None:
    received: list[dict[str, Any]] = []
    broker = RabbitBroker(RABBITMQ_URL)
    exchange = RabbitExchange(rabbit_env.exchange, type=ExchangeType.TOPIC)
    queue = RabbitQueue(rabbit_env.queue("faststream"), routing_key="user.*")

    @broker.subscriber(queue, exchange)
    async def on_user_event(body: dict[str, Any]) -> None:
        received.append(body)

    loop.run(broker.start())
    try:
        rabbit_env.configure(event_formats={rabbit_env.exchange: "flat"})
        sent = rabbit_env.publisher().publish("user.updated", {"user_id": 5}, exchange=rabbit_env.exchange)
        [body] = eventually(lambda: received, what="the FastStream subscriber to run")
        assert body["event_type"] == "user.updated" and body["user_id"] == 5
        assert body["event_id"] == sent.event_id
    finally:
        loop.run(broker.stop())


# -- kombu -----------------------------------------------------------------------------------


def test_kombu_producer_publishes_reach_svclink_handlers(rabbit_env: EventEnv) -> None:
    rec = Recorder()
    queue = rabbit_env.queue()
    rabbit_env.consume(queue, {"order.*": rec})
    with kombu.Connection(RABBITMQ_URL) as connection:
        exchange = kombu.Exchange(rabbit_env.exchange, type="topic")
        producer = kombu.Producer(connection.channel(), exchange=exchange)
        producer.publish({"order_id": "o-1", "total": 12.5}, routing_key="order.paid", declare=[exchange])
        producer.publish({"order_id": "o-1", "total": 12.5}, routing_key="order.paid")  # the same again
    first, again = rec.wait(2)
    assert first.event_type == "order.paid" and first.data == {"order_id": "o-1", "total": 12.5}
    assert first.event_id == again.event_id  # kombu sets no message id: the stable hash, the same
    assert rabbit_env.broker.count(queue + ".dead") == 0


def test_kombu_consumers_read_svclink_flat_events(rabbit_env: EventEnv) -> None:
    received: list[tuple[dict[str, Any], dict[str, Any]]] = []
    exchange = kombu.Exchange(rabbit_env.exchange, type="topic")
    queue = kombu.Queue(rabbit_env.queue("kombu"), exchange=exchange, routing_key="user.*")

    def on_message(body: dict[str, Any], message: kombu.Message) -> None:
        received.append((body, {**message.headers, "delivery_mode": message.properties.get("delivery_mode")}))
        message.ack()

    with (
        kombu.Connection(RABBITMQ_URL) as connection,
        kombu.Consumer(connection, [queue], callbacks=[on_message]),
    ):
        with bind(request_id="req-to-kombu"):
            sent = rabbit_env.publish("user.updated", {"user_id": 5}, format="flat")
        connection.drain_events(timeout=8)
    [(body, headers)] = received
    assert headers["event_type"] == "user.updated" and headers["X-Request-ID"] == "req-to-kombu"
    assert headers["delivery_mode"] == 2  # persistent, as an envelope is
    assert body == {
        "event_type": "user.updated",
        "event_id": sent.event_id,
        "user_id": 5,
        "timestamp": body["timestamp"],
        "service": rabbit_env.settings.service_name,
    }
