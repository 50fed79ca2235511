"""A message's size: refused before sending above ``max_message_size``; a broker that refuses
one anyway is reported with its reason, and the message is not sent again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import svclink
from svclink.core.events.envelope import Event

from ..events_support import EventEnv, env_fixture
from ..faultproxy import FaultProxy
from ..rabbit_node import RabbitNode, private_node

env = env_fixture()
side_only = env_fixture([("sync", "memory"), ("aio", "memory")])
side = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])

#: the broker's limit in the private node below (RabbitMQ's default is 128 MiB)
BROKER_LIMIT = 1024 * 1024


def test_the_default_is_rabbitmqs_default_limit() -> None:
    assert svclink.Settings().max_message_size == 128 * 1024 * 1024


def test_an_event_over_the_setting_is_refused_before_io(side_only: EventEnv) -> None:
    side_only.configure(amqp_url="amqp://guest:guest@127.0.0.1:1/", max_message_size=2000)
    publisher = side_only.publisher()
    with pytest.raises(svclink.InvalidEvent, match="max_message_size"):
        publisher.publish("user.updated", {"text": "x" * 2000}, exchange=side_only.exchange)
    with pytest.raises(svclink.InvalidEvent, match="max_message_size"):
        publisher.publish_many([("user.updated", {}), ("user.updated", {"text": "x" * 2000})])


def test_an_event_within_the_setting_is_sent(env: EventEnv) -> None:
    env.configure(max_message_size=2000)
    sink = env.sink(["#"])
    env.publish("user.updated", {"text": "x" * 1500})
    assert env.broker.count(sink) == 1


@pytest.fixture(scope="module")
def small_node() -> Iterator[RabbitNode]:
    with private_node(config=[f"max_message_size = {BROKER_LIMIT}"]) as node:
        yield node


def test_a_message_the_broker_refuses_is_reported_with_its_reason_and_not_sent_again(
    side: EventEnv, small_node: RabbitNode
) -> None:
    proxy = FaultProxy(small_node.port)
    try:
        side.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")  # the setting left at 128 MiB
        publisher = side.publisher()
        bound, unbind = _bind(small_node, side.exchange)
        with pytest.raises(svclink.PublishNacked) as raised:
            publisher.publish("user.updated", {"text": "x" * (2 * BROKER_LIMIT)}, exchange=side.exchange)
        assert "larger than configured max size" in str(raised.value)
        assert proxy.accepted == 1, "the refused message was sent again on a new connection"
        sent: Event = publisher.publish("user.updated", {"small": True}, exchange=side.exchange)
        assert sent.data == {"small": True} and bound() == 1
        unbind()
    finally:
        proxy.close()


def _bind(node: RabbitNode, exchange: str) -> tuple[Any, Any]:
    """A queue on ``node`` bound to every event of ``exchange``: its message counter, and its close."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="#")

    def count() -> int:
        return int(channel.queue_declare(queue, passive=True).method.message_count)

    return count, connection.close
