"""The publish after a failed one, the same on both sides: a connection is replaced only when it
is dead, and the next publish works.

An answer about a message (the broker nacked it) leaves a healthy connection: the next
publish goes out on it. A channel the broker closed on a message (``PRECONDITION_FAILED``:
over its ``max_message_size``) and a connection the broker closed are dead: the next
publish opens a new connection, and the old one is not left open.

A private node, so that the connections counted are this test's alone and the broker's
message size limit can be small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

import svclink

from ..events_support import EventEnv, RabbitView, eventually
from ..rabbit_node import RabbitNode, private_node

pytestmark = pytest.mark.rabbitmq

#: the private node's message size limit (RabbitMQ's default is 128 MiB)
BROKER_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    with private_node(config=[f"max_message_size = {BROKER_LIMIT}"]) as started:
        yield started


@pytest.fixture(params=["sync", "aio"])
def env(request: pytest.FixtureRequest, node: RabbitNode) -> Iterator[EventEnv]:
    made = EventEnv(request.param, RabbitView(node.url))
    yield made
    made.close()


def connections(node: RabbitNode, name: str) -> list[str]:
    """The broker's connections named ``name``, by their process id (one per connection)."""
    out = node.ctl("-q", "--no-table-headers", "list_connections", "pid", "client_properties").stdout
    return [line.partition("\t")[0] for line in out.splitlines() if f'{{"connection_name","{name}"}}' in line]


def one_connection(node: RabbitNode, name: str) -> str:
    """The one connection named ``name``, once the broker has closed any other."""
    found = eventually(lambda: (c := connections(node, name)) and len(c) == 1 and c, what="one connection")
    return str(found[0])


def full_queue(node: RabbitNode, env: EventEnv) -> None:
    """A queue bound to ``full.#`` that takes no message: the broker nacks each one routed to it."""
    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        channel = connection.channel()
        channel.exchange_declare(env.exchange, exchange_type="topic", durable=True)
        queue = env.queue("full")
        arguments = {"x-max-length": 0, "x-overflow": "reject-publish"}
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.queue_bind(queue, env.exchange, routing_key="full.#")
    finally:
        connection.close()


def nacked(env: EventEnv, node: RabbitNode) -> None:
    full_queue(node, env)
    with pytest.raises(svclink.PublishNacked, match="refused"):
        env.publish("full.item", {"n": 1})


def refused(env: EventEnv, node: RabbitNode) -> None:
    with pytest.raises(svclink.PublishNacked, match="closed the channel"):
        env.publish("big.item", {"text": "x" * (2 * BROKER_LIMIT)})


def closed(env: EventEnv, node: RabbitNode) -> None:
    for pid in connections(node, env.connection_name):  # gone once the client reads the close
        assert node.ctl("close_connection", pid, "svclink test").returncode == 0


#: each failure, and whether the connection it leaves is still the one to publish on
FAILURES: list[Any] = [
    pytest.param(nacked, True, id="the broker nacked the message"),
    pytest.param(refused, False, id="the broker closed the channel on the message"),
    pytest.param(closed, False, id="the broker closed the connection"),
]


@pytest.mark.parametrize(("fail", "kept"), FAILURES)
def test_the_publish_after_a_failure_goes_out_on_a_live_connection(
    env: EventEnv, node: RabbitNode, fail: Callable[[EventEnv, RabbitNode], None], kept: bool
) -> None:
    env.configure(amqp_url=node.url)  # the setting's limit left at 128 MiB: the broker refuses
    env.pub = env.publisher()
    env.publish("ok.item", {"n": 0})
    before = one_connection(node, env.connection_name)
    fail(env, node)
    sent = env.publish("ok.item", {"n": 2})
    assert sent.data == {"n": 2}
    after = one_connection(node, env.connection_name)  # a dead connection is not left open
    assert (after == before) is kept, "a healthy connection was replaced" if kept else "a dead one kept"
