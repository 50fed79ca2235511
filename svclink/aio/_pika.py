"""The aio side over aio-pika: a publisher link per event loop and a consumer session.

Connections are plain ``aio_pika.connect`` connections that svclink reopens itself (see
:mod:`svclink.aio.events` for why not ``connect_robust``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
from yarl import URL

from ..core.consuming import Ack, Decision, QueueSpec, Topology, republish
from ..core.errors import EventError
from ..core.events import ACKED, LOST, NACKED, RETURNED, TIMED_OUT, Delivery, OutgoingMessage, Properties
from ..core.settings import Settings
from ._transport import Lost, OnDelivery

AMQP_LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
    RuntimeError,
)


async def _connect(settings: Settings, name: str) -> aio_pika.abc.AbstractConnection:
    """A connection to the first node of ``amqp_url`` that answers."""
    errors = []
    for url in settings.amqp_url:
        target = URL(url).update_query(heartbeat=str(settings.amqp_heartbeat))
        try:
            return await aio_pika.connect(
                target,
                timeout=settings.connect_timeout,
                client_properties={"connection_name": name, "product": "svclink"},
            )
        except (TimeoutError, *AMQP_LOST) as exc:
            errors.append(f"{URL(url).with_password(None).with_user(None)}: {exc!r}")
    raise Lost("; ".join(errors))


def _aio_message(properties: Properties, body: bytes) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers=dict(properties.headers),
        content_type=properties.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=properties.message_id,
        timestamp=properties.timestamp,
        type=properties.type,
        app_id=properties.app_id,
        correlation_id=properties.correlation_id,
    )


def _core_delivery(message: aio_pika.abc.AbstractIncomingMessage) -> Delivery:
    stamp = message.timestamp
    return Delivery(
        body=message.body,
        properties=Properties(
            headers=MappingProxyType(dict(message.headers or {})),  # a copy, so no other copy is made
            message_id=message.message_id,
            type=message.type,
            app_id=message.app_id,
            correlation_id=message.correlation_id,
            timestamp=int(stamp.timestamp()) if isinstance(stamp, datetime) else None,
            content_type=message.content_type,
        ),
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
    )


#: a publisher connection unused for this long lets the loop run once before a publish
IDLE = 0.25


class PikaLink:
    """One connection + confirm channel, used by every task of one event loop."""

    def __init__(
        self, connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._declaring = asyncio.Lock()  # 500 concurrent first publishes declare the exchange once
        self._used = time.monotonic()

    @classmethod
    async def open(cls, settings: Settings, name: str) -> PikaLink:
        connection = await _connect(settings, name)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except AMQP_LOST as exc:
            await connection.close()
            raise Lost(repr(exc)) from None
        except asyncio.CancelledError:  # the publish's deadline passed: leave no open connection behind
            await asyncio.shield(connection.close())
            raise
        return cls(connection, channel)

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is not None:
            return exchange
        if name == "":
            return self._channel.default_exchange
        async with self._declaring:
            exchange = self._exchanges.get(name)
            if exchange is None:
                try:
                    exchange = await self._channel.declare_exchange(
                        name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                except aiormq.exceptions.ChannelPreconditionFailed as exc:
                    raise EventError(f"exchange {name!r} exists with other settings: {exc}") from None
                self._exchanges[name] = exchange
        return exchange

    async def _one(self, message: OutgoingMessage, deadline: float) -> str:
        try:
            exchange = self._exchanges.get(message.exchange) or await self._exchange(message.exchange)
            await exchange.publish(
                _aio_message(message.properties, message.body),
                message.routing_key,
                mandatory=message.mandatory,
                timeout=max(0.001, deadline - time.monotonic()),
            )
        except aio_pika.exceptions.PublishError:
            return RETURNED
        except aio_pika.exceptions.DeliveryError:
            return NACKED
        except TimeoutError:
            return TIMED_OUT
        except AMQP_LOST:
            return LOST
        finally:
            self._used = time.monotonic()
        return ACKED

    async def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]:
        """Publish ``messages`` concurrently on the channel and wait for their confirms; one outcome each.

        After an idle spell the loop runs once first, so the reader task sees a close that
        arrived meanwhile (with the loop stopped between ``asyncio.run()`` calls, say) and
        :class:`Lost` says nothing was sent. A link in steady use skips that: the loop ran
        moments ago, waiting for the last confirms.
        """
        if time.monotonic() - self._used > IDLE:
            await asyncio.sleep(0)
        if self._connection.is_closed or self._channel.is_closed:
            raise Lost("connection closed while idle")
        if len(messages) == 1:  # the common case: no task to wrap it in
            return [await self._one(messages[0], deadline)]
        return list(await asyncio.gather(*(self._one(m, deadline) for m in messages)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()


async def _declare_queue(
    channel: aio_pika.abc.AbstractChannel, spec: QueueSpec
) -> aio_pika.abc.AbstractQueue:
    return await channel.declare_queue(
        spec.name, durable=not spec.exclusive, exclusive=spec.exclusive, arguments=dict(spec.arguments)
    )


class PikaSession:
    """One consumer connection: declares the topology and consumes; aio-pika runs each message as a task."""

    def __init__(self, settings: Settings, name: str, topo: Topology, prefetch: int) -> None:
        self._settings, self._name, self._topo, self._prefetch = settings, name, topo, prefetch
        self.lost = asyncio.Event()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._tag: str | None = None

    def _on_close(self, *_args: Any) -> None:
        self.lost.set()

    async def start(self, on_delivery: OnDelivery) -> None:
        self._connection = await _connect(self._settings, self._name)
        self._connection.close_callbacks.add(self._on_close)
        topo = self._topo
        try:
            channel = self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            channel.close_callbacks.add(self._on_close)
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(self._on_close)  # the queue was deleted, say
            await channel.set_qos(prefetch_count=self._prefetch)
            exchange = await channel.declare_exchange(
                topo.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for spec in (*topo.retry_queues, topo.dead_queue):
                await _declare_queue(channel, spec)
            queue = self._queue = await _declare_queue(channel, topo.queue)
            for pattern in topo.bindings:
                await queue.bind(exchange, routing_key=pattern)

            async def deliver(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                await on_delivery(_core_delivery(message), message)

            self._tag = await queue.consume(deliver, no_ack=False)
        except aiormq.exceptions.ChannelClosed as exc:
            await self.close()
            if isinstance(
                exc, (aiormq.exceptions.ChannelPreconditionFailed, aiormq.exceptions.ChannelAccessRefused)
            ):
                raise EventError(f"cannot declare the consumer's queues: {exc}") from None
            raise Lost(repr(exc)) from None
        except AMQP_LOST as exc:
            await self.close()
            raise Lost(repr(exc)) from None

    async def finish(self, token: Any, delivery: Delivery, decision: Decision) -> None:
        """Carry out ``decision``: republish a copy if it says so (confirmed), then ack.

        Any failure marks the session lost: the message stays unacked and is redelivered
        after the reconnect (which also declares a deleted delay or dead queue again).
        """
        message: aio_pika.abc.AbstractIncomingMessage = token
        assert self._channel is not None
        try:
            if not isinstance(decision, Ack):
                copy = republish(delivery, decision)
                try:
                    await self._channel.default_exchange.publish(
                        _aio_message(copy.properties, copy.body), copy.routing_key, mandatory=True, timeout=30
                    )
                except (aio_pika.exceptions.DeliveryError, TimeoutError) as exc:
                    await message.nack(requeue=True)
                    raise Lost(f"could not move the message to {copy.routing_key}: {exc!r}") from None
            await message.ack()
        except AMQP_LOST as exc:
            self.lost.set()
            raise Lost(f"could not settle a message ({exc!r}); it will be redelivered") from None
        except Lost:
            self.lost.set()
            raise

    async def reject(self, token: Any) -> None:
        message: aio_pika.abc.AbstractIncomingMessage = token
        with contextlib.suppress(*AMQP_LOST):
            await message.nack(requeue=True)

    async def stop_consuming(self) -> None:
        if self._queue is not None and self._tag is not None and not self.lost.is_set():
            with contextlib.suppress(*AMQP_LOST, TimeoutError):
                await self._queue.cancel(self._tag, timeout=5)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
