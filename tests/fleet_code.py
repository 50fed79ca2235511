"""The other end of the fleet scenarios: code written the way services that do not use svclink write it.

:class:`HandWrittenPublisher` and :class:`HandWrittenConsumer` are the topic-exchange
publisher and consumer of a team's own repositories, on raw aio-pika with its defaults: a
non-durable exchange, a flat JSON body with ``event_type`` and ``timestamp`` beside the
data, ``event_type`` and ``user_id`` headers, and a consumer that does
``event_data = json.loads(body); event_data["event_type"]``. Each runs on an event loop of
its own thread, so the scenarios call it like the sync side.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc

T = TypeVar("T")

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


class LoopThread:
    """An event loop on a thread of its own; :meth:`run` runs a coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fleet-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class HandWrittenPublisher:
    """``EventPublisher`` of the team's api_service, as written in its repository."""

    def __init__(self, exchange_name: str, loop: LoopThread) -> None:
        self.exchange_name = exchange_name
        self._loop = loop
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None

    def connect(self) -> None:
        self._loop.run(self._connect())

    async def _connect(self) -> None:
        self.connection = await aio_pika.connect_robust(RABBITMQ_URL)
        channel = await self.connection.channel()
        self.exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC)

    def publish_event(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Publish ``data`` as the team does; returns the body it sent."""
        return self._loop.run(self._publish_event(event_type, data))

    async def _publish_event(self, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        assert self.exchange is not None
        event_data = {
            "event_type": event_type,
            **data,
            "timestamp": datetime.utcnow().isoformat(),
            "service": "api_service",
        }
        message = aio_pika.Message(
            body=json.dumps(event_data).encode(),
            headers={"event_type": event_type, "user_id": data.get("user_id")},
        )
        await self.exchange.publish(message, routing_key=event_type)
        return event_data

    def close(self) -> None:
        if self.connection is not None:
            self._loop.run(self.connection.close())


class HandWrittenConsumer:
    """``EventConsumer`` of the team's notification_service, as written in its repository: its
    handler reads the body's own keys, and any exception rejects the message for good."""

    def __init__(self, exchange_name: str, queue_name: str, loop: LoopThread) -> None:
        self.exchange_name, self.queue_name = exchange_name, queue_name
        self._loop = loop
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.handled: list[dict[str, Any]] = []
        self.failed: list[BaseException] = []
        #: the AMQP headers of every message, as aio-pika decoded them
        self.headers: list[dict[str, Any]] = []

    def start(self, routing_keys: list[str]) -> None:
        self._loop.run(self._start(routing_keys))

    async def _start(self, routing_keys: list[str]) -> None:
        self.connection = await aio_pika.connect_robust(RABBITMQ_URL)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=10)
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue(self.queue_name, durable=True)
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        await queue.consume(self._on_message)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            self.headers.append(dict(message.headers))
            try:
                event_data = json.loads(message.body)
                event_type = event_data["event_type"]
                if event_type == "user.updated":
                    self.handle_user_updated(event_data)
            except Exception as exc:
                self.failed.append(exc)
                raise

    def handle_user_updated(self, event_data: dict[str, Any]) -> None:
        event_data["user_id"]  # what the handler goes on to use: a KeyError when it is not at the top
        self.handled.append(event_data)

    def close(self) -> None:
        if self.connection is not None:
            self._loop.run(self.connection.close())
