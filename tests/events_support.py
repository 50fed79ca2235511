"""Event scenarios written once, run on (sync, aio) x (RabbitMQ, memory://).

:class:`EventEnv` is what a scenario holds: ``env.publish(...)`` goes through the side's
publisher (``svclink.sync`` directly, or ``svclink.aio`` awaited on a real loop),
``env.consume(...)`` runs the side's :class:`EventConsumer` on a thread of its own (its
own loop for aio), and ``env.broker`` looks at the broker from outside: message counts,
the dead-letter queue, raw publishes, closing connections by name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import pika
import pika.exceptions
import pytest

import svclink
import svclink.aio
import svclink.sync
import svclink.testing
from svclink.core.context.value import current
from svclink.core.events.envelope import Event
from svclink.core.events.topology import ConsumerConfig, topology

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WAIT = 8.0  # the longest any scenario waits for something that should happen


def eventually(check: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {result!r})")
        time.sleep(0.02)


@attrs.frozen
class Got:
    """A message taken from a queue by the test."""

    body: bytes
    headers: Mapping[str, Any]
    routing_key: str


class RabbitView:
    """RabbitMQ seen from outside svclink, through a plain pika connection."""

    kind = "rabbitmq"
    url = RABBITMQ_URL

    def __init__(self, url: str = RABBITMQ_URL) -> None:
        self.url = url
        params = pika.URLParameters(url)
        params.client_properties = {"connection_name": f"svclink-test-admin-{uuid.uuid4().hex[:8]}"}
        self._params = params
        self._connection = pika.BlockingConnection(params)
        self._ch = self._connection.channel()

    def _channel(self) -> Any:
        if not self._connection.is_open:
            self._connection = pika.BlockingConnection(self._params)
        if not self._ch.is_open:
            self._ch = self._connection.channel()
        return self._ch

    def _passive(self, queue: str) -> Any:
        try:
            return self._channel().queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            return None

    def exists(self, queue: str) -> bool:
        return self._passive(queue) is not None

    def count(self, queue: str) -> int:
        method = self._passive(queue)
        assert method is not None, f"queue {queue} does not exist"
        return int(method.message_count)

    def consumers(self, queue: str) -> int:
        method = self._passive(queue)
        return 0 if method is None else int(method.consumer_count)

    def arguments_ok(self, queue: str, arguments: Mapping[str, Any]) -> bool:
        """Whether ``queue`` exists with these arguments (a passive-less redeclare must not fail)."""
        try:
            self._channel().queue_declare(queue, durable=True, arguments=dict(arguments))
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False

    def get(self, queue: str) -> Got | None:
        method, props, body = self._channel().basic_get(queue, auto_ack=True)
        if method is None:
            return None
        return Got(body, dict(props.headers or {}), method.routing_key)

    def sink(
        self, queue: str, exchange: str, patterns: list[str], arguments: Mapping[str, Any] | None = None
    ) -> None:
        ch = self._channel()
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        ch.queue_declare(queue, durable=True, arguments=dict(arguments or {}))
        for pattern in patterns:
            ch.queue_bind(queue, exchange, routing_key=pattern)

    def declare_exchange(self, name: str, type: str) -> None:
        self._channel().exchange_declare(name, exchange_type=type, durable=True)

    def publish_raw(
        self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, Any] | None = None
    ) -> None:
        connection = pika.BlockingConnection(self._params)
        try:
            ch = connection.channel()
            ch.confirm_delivery()
            props = pika.BasicProperties(headers=dict(headers or {}), delivery_mode=2)
            ch.basic_publish(exchange, routing_key, body, props)
        finally:
            connection.close()

    def connections(self, name: str) -> int:
        """How many connections named ``name`` the broker has open (``rabbitmqctl list_connections``)."""
        out = subprocess.run(
            ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "client_properties"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return sum(f'{{"connection_name","{name}"}}' in line for line in out.splitlines())

    def close_connections(self, name: str) -> int:
        """Close the broker's connections named ``name`` (``rabbitmqctl close_connection``); how many."""
        out = subprocess.run(
            ["rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        closed = 0
        for line in out.splitlines():
            pid, _, props = line.partition("\t")
            if f'{{"connection_name","{name}"}}' in props:
                subprocess.run(
                    ["rabbitmqctl", "-q", "close_connection", pid, "svclink test"],
                    capture_output=True,
                    timeout=30,
                    check=True,
                )
                closed += 1
        return closed

    def delete(self, queues: list[str], exchanges: list[str]) -> None:
        for queue in queues:
            self._channel().queue_delete(queue)
        for exchange in exchanges:
            self._channel().exchange_delete(exchange)

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()


class MemoryView:
    """The memory:// broker seen from outside svclink."""

    kind = "memory"
    url = "memory://"

    @property
    def broker(self) -> svclink.testing.MemoryBroker:
        return svclink.testing.get_broker()

    def exists(self, queue: str) -> bool:
        return self.broker.queue_exists(queue)

    def count(self, queue: str) -> int:
        return self.broker.message_count(queue)

    def consumers(self, queue: str) -> int:
        return self.broker.consumer_count(queue) if self.exists(queue) else 0

    def arguments_ok(self, queue: str, arguments: Mapping[str, Any]) -> bool:
        return dict(self.broker.queue_arguments(queue)) == dict(arguments)

    def get(self, queue: str) -> Got | None:
        message = self.broker.get(queue)
        return None if message is None else Got(message.body, dict(message.headers), message.routing_key)

    def sink(
        self, queue: str, exchange: str, patterns: list[str], arguments: Mapping[str, Any] | None = None
    ) -> None:
        connection = self.broker.connect("svclink-test-admin")
        self.broker.declare_exchange(connection, exchange, "topic")
        self.broker.declare_queue(connection, queue, arguments)
        for pattern in patterns:
            self.broker.bind_queue(connection, queue, exchange, pattern)
        connection.close()

    def declare_exchange(self, name: str, type: str) -> None:
        connection = self.broker.connect("svclink-test-admin")
        self.broker.declare_exchange(connection, name, type)
        connection.close()

    def publish_raw(
        self, exchange: str, routing_key: str, body: bytes, headers: Mapping[str, Any] | None = None
    ) -> None:
        from svclink.core.events.message import OutgoingMessage, Properties

        connection = self.broker.connect("svclink-test-admin")
        message = OutgoingMessage(
            exchange, routing_key, body, Properties(headers=headers or {}), mandatory=False
        )
        assert self.broker.publish(connection, message).wait(5) == "ack"
        connection.close()

    def connections(self, name: str) -> int:
        return self.broker.connection_names().count(name)

    def close_connections(self, name: str) -> int:
        return self.broker.close_connections(name)

    def delete(self, queues: list[str], exchanges: list[str]) -> None:
        for queue in queues:
            self.broker.delete_queue(queue)
        for exchange in exchanges:
            self.broker.delete_exchange(exchange)

    def close(self) -> None:
        svclink.testing.reset()


BrokerView = RabbitView | MemoryView


class Recorder:
    """A handler's behaviour, the same on both sides: record, maybe sleep, maybe fail.

    ``fail_first`` failures, then success; ``always_fail`` never succeeds.
    """

    def __init__(
        self,
        *,
        fail_first: int = 0,
        always_fail: bool = False,
        sleep: float = 0.0,
        then: Callable[[Event], None] | None = None,
    ) -> None:
        self.fail_first, self.always_fail, self.sleep, self.then = fail_first, always_fail, sleep, then
        self.calls: list[tuple[Event, str | None, float]] = []
        self._lock = threading.Lock()

    def _record(self, event: Event) -> bool:
        ctx = current()
        with self._lock:
            self.calls.append((event, ctx.request_id if ctx else None, time.monotonic()))
            n = len(self.calls)
        return self.always_fail or n <= self.fail_first

    def sync(self, event: Event) -> None:
        fail = self._record(event)
        if self.sleep:
            time.sleep(self.sleep)
        if self.then is not None:
            self.then(event)
        if fail:
            raise RuntimeError(f"handler failure on attempt {event.attempt}")

    async def aio(self, event: Event) -> None:
        fail = self._record(event)
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.then is not None:
            self.then(event)
        if fail:
            raise RuntimeError(f"handler failure on attempt {event.attempt}")

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return [c[0] for c in self.calls]

    def wait(self, n: int, timeout: float = WAIT) -> list[Event]:
        eventually(lambda: len(self.calls) >= n, timeout, f"{n} handler calls (have {len(self.calls)})")
        return self.events


class Running:
    """A consumer running on its own thread (and, for aio, its own event loop)."""

    def __init__(self, consumer: Any, side: str) -> None:
        self.consumer = consumer
        self.error: BaseException | None = None
        self.returned = threading.Event()

        def target() -> None:
            try:
                if side == "sync":
                    consumer.run()
                else:
                    asyncio.run(consumer.run())
            except BaseException as exc:
                self.error = exc
            finally:
                self.returned.set()

        self.thread = threading.Thread(target=target, name="test-consumer", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = WAIT) -> None:
        self.consumer.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer did not stop"
        if self.error is not None:
            raise self.error


class SidePublisher:
    """A publisher of one side, called synchronously."""

    def __init__(self, side: str, publisher: Any, runner: asyncio.Runner | None) -> None:
        self.side, self.publisher, self.runner = side, publisher, runner

    def publish(self, event_type: str, data: Any, **kwargs: Any) -> Event:
        if self.runner is None:
            return self.publisher.publish(event_type, data, **kwargs)  # type: ignore[no-any-return]
        return self.runner.run(
            self.publisher.publish(event_type, data, **kwargs), context=contextvars.copy_context()
        )

    def publish_many(self, events: list[tuple[str, Any]], **kwargs: Any) -> list[Event]:
        if self.runner is None:
            return self.publisher.publish_many(events, **kwargs)  # type: ignore[no-any-return]
        return self.runner.run(self.publisher.publish_many(events, **kwargs))

    def publish_concurrently(self, count: int, event_type: str, **kwargs: Any) -> list[Any]:
        """``count`` publishes at once: 20 threads sharing the publisher (sync) or ``count`` tasks (aio).

        Returns one result per publish: the event, or the exception it raised.
        """
        if self.runner is None:
            per_thread = count // 20

            def worker(t: int) -> list[Any]:
                results: list[Any] = []
                for i in range(per_thread):
                    try:
                        results.append(self.publisher.publish(event_type, {"t": t, "i": i}, **kwargs))
                    except Exception as exc:
                        results.append(exc)
                return results

            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                return [r for rs in pool.map(worker, range(20)) for r in rs]

        async def all_at_once() -> list[Any]:
            coros = [self.publisher.publish(event_type, {"i": i}, **kwargs) for i in range(count)]
            return list(await asyncio.gather(*coros, return_exceptions=True))

        return self.runner.run(all_at_once())

    def publish_timed(self, timeouts: list[float], event_type: str, **kwargs: Any) -> list[tuple[Any, float]]:
        """One publish per timeout, all at once (a thread each, or a task each); for each, its
        result (the event or the exception it raised) and the seconds it took."""

        def one(i: int, timeout: float) -> tuple[Any, float]:
            started = time.monotonic()
            try:
                result: Any = self.publisher.publish(event_type, {"i": i}, timeout=timeout, **kwargs)
            except Exception as exc:
                result = exc
            return result, time.monotonic() - started

        if self.runner is None:
            with concurrent.futures.ThreadPoolExecutor(len(timeouts)) as pool:
                return list(pool.map(one, range(len(timeouts)), timeouts))

        async def one_async(i: int, timeout: float) -> tuple[Any, float]:
            started = time.monotonic()
            try:
                result: Any = await self.publisher.publish(event_type, {"i": i}, timeout=timeout, **kwargs)
            except Exception as exc:
                result = exc
            return result, time.monotonic() - started

        async def all_at_once() -> list[tuple[Any, float]]:
            return list(await asyncio.gather(*(one_async(i, t) for i, t in enumerate(timeouts))))

        return self.runner.run(all_at_once())

    def close(self) -> None:
        if self.runner is None:
            self.publisher.close()
        else:
            self.runner.run(self.publisher.close())


class EventEnv:
    """One scenario's world: a side, a broker, unique names, and cleanup of all of it."""

    def __init__(self, side: str, broker: BrokerView) -> None:
        self.side = side
        self.broker = broker
        self.id = uuid.uuid4().hex[:10]
        self.exchange = f"test.events.{self.id}"
        self.connection_name = f"svclink-test-{self.id}"
        self.runner = asyncio.Runner() if side == "aio" else None
        self.settings = self.configure()
        self._queues: list[str] = []
        self._exchanges: list[str] = [self.exchange]
        self._running: list[Running] = []
        self._publishers: list[SidePublisher] = []
        self.pub = self.publisher()

    def configure(self, **overrides: Any) -> svclink.Settings:
        """(Re)configure svclink for this scenario; later publishers and consumers use it."""
        values: dict[str, Any] = {
            "service_name": "svc-" + self.id,
            "amqp_url": self.broker.url,
            "publish_timeout": 5,
            "connect_timeout": 2,
        }
        values.update(overrides)
        self.settings = svclink.configure(**values)
        return self.settings

    @property
    def module(self) -> Any:
        return svclink.sync if self.side == "sync" else svclink.aio

    def queue(self, what: str = "q") -> str:
        name = f"test.{what}.{self.id}"
        self._queues.append(name)
        return name

    def other_exchange(self, type: str) -> str:
        """Another exchange of the given type, deleted after the scenario; returns its name."""
        name = f"{self.exchange}.{type}"
        self._exchanges.append(name)
        self.broker.declare_exchange(name, type)
        return name

    def sink(self, patterns: list[str], what: str = "sink", **kwargs: Any) -> str:
        """A plain queue bound to the scenario's exchange with ``patterns``; returns its name."""
        name = self.queue(what)
        self.broker.sink(name, self.exchange, patterns, **kwargs)
        return name

    def publisher(self, name: str | None = None) -> SidePublisher:
        publisher = self.module.Publisher(self.settings, connection_name=name or self.connection_name)
        handle = SidePublisher(self.side, publisher, self.runner)
        self._publishers.append(handle)
        return handle

    def publish(self, event_type: str, data: Any, **kwargs: Any) -> Event:
        kwargs.setdefault("exchange", self.exchange)
        return self.pub.publish(event_type, data, **kwargs)

    def consumer(self, queue: str, handlers: Mapping[str, Recorder], **kwargs: Any) -> Any:
        kwargs.setdefault("exchange", self.exchange)
        kwargs.setdefault("connection_name", self.connection_name)
        consumer = self.module.EventConsumer(queue, settings=self.settings, **kwargs)
        for pattern, recorder in handlers.items():
            consumer.on(pattern)(recorder.sync if self.side == "sync" else recorder.aio)
        config = ConsumerConfig(
            queue=queue,
            exchange=kwargs["exchange"],
            bindings=kwargs.get("bindings") or ["#"],
            max_attempts=consumer.config.max_attempts,
            retry_delays=consumer.config.retry_delays,
        )
        topo = topology(config)
        self._queues += [q.name for q in (*topo.retry_queues, topo.dead_queue)]
        return consumer

    def consume(self, queue: str, handlers: Mapping[str, Recorder], **kwargs: Any) -> Running:
        """Start a consumer and wait until it consumes."""
        running = self.start(self.consumer(queue, handlers, **kwargs))
        eventually(lambda: running.error is not None or self.broker.consumers(queue) >= 1, what="a consumer")
        if running.error is not None:
            raise running.error
        return running

    def start(self, consumer: Any) -> Running:
        running = Running(consumer, self.side)
        self._running.append(running)
        return running

    def close(self) -> None:
        for running in self._running:
            running.consumer.stop()
            running.thread.join(WAIT)
        for publisher in self._publishers:
            with contextlib.suppress(Exception):
                publisher.close()
        if self.runner is not None:
            self.runner.close()
        try:
            self.broker.delete(self._queues, self._exchanges)
        finally:
            self.broker.close()


PARAMS = [(side, broker) for side in ("sync", "aio") for broker in ("rabbitmq", "memory")]


def env_fixture(params: list[tuple[str, str]] = PARAMS) -> Any:
    """The ``env`` fixture of a test module: one :class:`EventEnv` per (side, broker) in ``params``."""

    @pytest.fixture(params=params, ids=[f"{s}-{b}" for s, b in params])
    def env(request: pytest.FixtureRequest) -> Iterator[EventEnv]:
        side, kind = request.param
        broker: BrokerView = RabbitView() if kind == "rabbitmq" else MemoryView()
        e = EventEnv(side, broker)
        yield e
        e.close()

    return env
