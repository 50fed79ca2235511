"""Memory and handles: RSS and open file descriptors before and after many calls and publishes."""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pika

import svclink.aio
import svclink.sync
import svclink.testing
from svclink.core.settings import install


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _snapshot() -> tuple[int, int]:
    gc.collect()
    return _rss_kib(), _fds()


def growth(url: str, n: int) -> dict[str, int]:
    """Make ``n`` sync calls, ``n`` aio calls and ``n`` publishes per side; report growth.

    Both sides make a first round of calls before the first snapshot, so that what is
    made once per process (pools, an event loop's client, its SSL context) is not
    counted as growth.
    """
    user = svclink.sync.get_service("user")

    async def aio_calls(count: int) -> None:
        service = await svclink.aio.get_service("user")
        for _ in range(count):
            await service.http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    for _ in range(1000):
        user.http_dispatch("GET", "/warm")
    asyncio.run(aio_calls(1000))
    rss0, fds0 = _snapshot()
    for _ in range(n):
        user.http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})
    asyncio.run(aio_calls(n))
    rss1, fds1 = _snapshot()
    figures = {"calls": 2 * n, "rss_growth_kib": rss1 - rss0, "fd_growth": fds1 - fds0}
    figures.update(_publish_growth(n))
    return figures


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _publish_growth(n: int) -> dict[str, int]:
    """``n`` publishes per side through memory://, and ``n // 10`` through RabbitMQ (confirms take longer)."""
    saved = svclink.get_settings()
    try:
        figures = _publishes("memory", "memory://", n)
        figures.update(_publishes("rabbitmq", RABBITMQ_URL, max(1, n // 10)))
    finally:
        install(saved)
    return figures


class _Sink:
    """A queue bound to the exchange, so publishes are routable (svclink publishes ``mandatory``),
    that keeps only the newest message, so the broker does not grow with them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.exchange = f"svclink.bench.resources.{uuid.uuid4().hex[:8]}"  # unique: runs never collide
        self.queue = f"{self.exchange}.sink"
        if url.startswith("memory:"):
            broker = svclink.testing.get_broker(url)
            connection = broker.connect("bench")
            broker.declare_exchange(connection, self.exchange, "topic")
            broker.declare_queue(connection, self.queue, {"x-max-length": 1})
            broker.bind_queue(connection, self.queue, self.exchange, "#")
            connection.close()
        else:
            with self._channel() as channel:
                channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
                channel.queue_declare(self.queue, durable=True, arguments={"x-max-length": 1})
                channel.queue_bind(self.queue, self.exchange, routing_key="#")

    @contextmanager
    def _channel(self) -> Iterator[Any]:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield connection.channel()
        finally:
            connection.close()

    def delete(self) -> None:
        if self.url.startswith("memory:"):
            broker = svclink.testing.get_broker(self.url)
            broker.delete_queue(self.queue)
            broker.delete_exchange(self.exchange)
        else:
            with self._channel() as channel:
                channel.queue_delete(self.queue)
                channel.exchange_delete(self.exchange)


def _publishes(label: str, url: str, n: int) -> dict[str, int]:
    """``n`` sync and ``n`` aio publishes through the process's publishers (``get_publisher()``)."""
    install(attrs.evolve(svclink.get_settings(), service_name="bench", amqp_url=url))
    sink = _Sink(url)
    runner = asyncio.Runner()

    async def aio_publishes(count: int) -> None:
        publisher = await svclink.aio.get_publisher()
        for i in range(count):
            await publisher.publish("bench.tick", {"i": i}, exchange=sink.exchange)

    try:
        sync = svclink.sync.get_publisher()
        sync.publish("bench.warm", {"i": 0}, exchange=sink.exchange)
        runner.run(aio_publishes(1))
        rss0, fds0 = _snapshot()
        for i in range(n):
            sync.publish("bench.tick", {"i": i}, exchange=sink.exchange)
        runner.run(aio_publishes(n))
        rss1, fds1 = _snapshot()
    finally:
        svclink.sync.get_publisher().close()
        runner.run(_close_aio())
        runner.close()
        sink.delete()
    return {
        f"{label}_publishes": 2 * n,
        f"{label}_publish_rss_growth_kib": rss1 - rss0,
        f"{label}_publish_fd_growth": fds1 - fds0,
    }


async def _close_aio() -> None:
    await (await svclink.aio.get_publisher()).close()
