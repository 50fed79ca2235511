"""The private broker node the fault tests use starts, serves, stops and dies for real."""

from __future__ import annotations

import pika
import pytest

from ..rabbit_node import private_node


@pytest.mark.timeout(120)
def test_a_private_node_serves_amqp_and_is_gone_after_the_block() -> None:
    with private_node() as node:
        conn = pika.BlockingConnection(pika.URLParameters(node.url))
        channel = conn.channel()
        channel.queue_declare("private-node-check")
        channel.basic_publish("", "private-node-check", b"hello")
        method, _props, body = channel.basic_get("private-node-check", auto_ack=True)
        assert body == b"hello" and method is not None
        conn.close()
        port = node.port
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(
            pika.URLParameters(f"amqp://guest:guest@127.0.0.1:{port}/?connection_attempts=1")
        )
