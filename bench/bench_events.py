"""Events: svclink against raw pika and aio-pika, on the same RabbitMQ at 127.0.0.1:5672.

Every comparison does the same work on both sides. The raw publishers do per event what
a hand-written publisher does: a fresh id and time, the envelope encoded to JSON, then
the same properties, exchange, routing key, size, persistence, ``mandatory`` and
publisher confirms as svclink's (the raw consumers decode each body likewise). A
stricter raw loop that re-sends one body encoded beforehand runs beside them, for
reference.

The aio publishers of a round share one connection, svclink's (the raw loops publish
through an aio-pika exchange on its channel), so that the ratio compares code, not two
connections' luck; the raw loop on a connection of its own runs beside them, and its
ratio shows whether svclink's connection helps. (pika's ``BlockingConnection`` cannot
share svclink's sync connection, so the sync sides have one each.)

The consume comparisons drain the same pre-filled queue with the same prefetch. A drain
includes opening its connection and channel, and the raw consumers declare what
svclink's consumer declares (exchange, work, delay and dead-letter queues, bindings, a
confirm channel for moving messages to them), so that both sides do the same fixed work
and the ratio is the per-message one. The queues are durable and the messages
persistent, as svclink's are in production, so the broker writes them to disk.
Everything is declared under a unique prefix and deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pika

import svclink
import svclink.aio
import svclink.sync
from svclink.aio._pika_link import PikaLink as AioPikaLink
from svclink.core.events.message import OutgoingMessage, prepare
from svclink.core.events.topology import ConsumerConfig, topology
from svclink.core.settings import build
from svclink.sync._pika_link import PikaLink

from .harness import Result, Target, compare, rotating

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: svclink's throughput at least 0.95x the raw library's, as a ratio of times
RATIO = round(1 / 0.95, 3)
PREFETCH = 10
BATCH = 100  # events per publish_many call
#: publishes per variant in a round of the one-at-a-time comparisons. Short rounds, and many
#: of them (as many publishes in all as ``ops`` x ``rounds``), so that the broker's pauses
#: (its disk writes, its own garbage collection) fall on every variant alike: with rounds
#: of 1,000 publishes the middle half of the rounds' ratios spanned 0.15 to 0.4.
SLICE = 50
DATA = {"user_id": 5, "changes": {"name": "ada", "email": "ada@example.com"}}

RAW_SYNC, RAW_AIO = "pika BlockingConnection", "aio-pika, shared connection"
#: the raw loops re-sending one body encoded beforehand: less work than any real publisher
PRE_SYNC, PRE_AIO = "pika, body pre-encoded", "aio-pika, body pre-encoded"
#: the raw aio loop on a connection of its own (the others share svclink's connection)
OWN_AIO = "aio-pika, own connection"
ONE_BY_ONE, MANY = "publish one at a time", f"publish_many x{BATCH}"
LINK_ONLY = "svclink connection only"
TARGETS = [
    Target("events publish sync", "svclink", RAW_SYNC, "<=", RATIO),
    Target("events publish sync", "svclink", PRE_SYNC, "<=", None),
    Target("events publish aio c=1", "svclink", RAW_AIO, "<=", RATIO),
    Target("events publish aio c=1", "svclink", PRE_AIO, "<=", None),
    Target("events publish aio c=1", "svclink", OWN_AIO, "<=", None),
    Target("events publish aio c=50", "svclink", RAW_AIO, "<=", RATIO),
    Target("events publish aio c=50", "svclink", PRE_AIO, "<=", None),
    Target("events publish aio c=50", "svclink", OWN_AIO, "<=", None),
    Target("events publish_many sync", MANY, ONE_BY_ONE, ">=", 2.0),
    Target("events publish_many aio", MANY, ONE_BY_ONE, ">=", 2.0),
    Target("events consume sync", "svclink EventConsumer", "pika basic_consume", "<=", RATIO),
    Target("events consume aio", "svclink EventConsumer", "aio-pika consume", "<=", RATIO),
]


class Names:
    """This run's exchanges and queues: unique, so runs never collide, and all deleted afterwards."""

    def __init__(self) -> None:
        prefix = f"svclink.bench.{uuid.uuid4().hex[:8]}"
        self.exchange = prefix  # what the publish benchmarks publish to
        self.sink = f"{prefix}.sink"  # bound to it, so mandatory publishes are routable
        self.consume_exchange = f"{prefix}.consume"
        self.queue = f"{prefix}.work"  # the consume benchmarks drain it
        config = ConsumerConfig(queue=self.queue, exchange=self.consume_exchange, bindings=["bench.#"])
        self.topology = topo = topology(config)
        self.queues = [self.sink, self.queue, *(q.name for q in topo.retry_queues), topo.dead_queue.name]


@contextmanager
def admin() -> Iterator[Any]:
    """A plain pika channel for setting up and tearing down, outside anything measured."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        yield connection.channel()
    finally:
        connection.close()


def _message(settings: svclink.Settings, exchange: str, routing_key: str) -> OutgoingMessage:
    """The message svclink sends for one event: the raw side publishes the same bytes."""
    return prepare(
        settings, routing_key, DATA, exchange=exchange, event_id=None, occurred_at=datetime.now(UTC), wall=0
    )[1]


def run(ops: int, rounds: int, consume: int | None = None) -> tuple[list[Result], list[Target]]:
    """Every events benchmark; ``consume`` messages per consume batch (default ``10 * ops``)."""
    consume = consume or 10 * ops
    ops = max(BATCH, ops // BATCH * BATCH)  # whole publish_many batches, whole gathers of 50
    settings = build({"service_name": "bench", "amqp_url": RABBITMQ_URL, "publish_timeout": 30})
    names = Names()
    with admin() as ch:
        for exchange in (names.exchange, names.consume_exchange):
            ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        for queue in (names.sink, names.queue):  # the work queue as svclink's consumer declares it
            ch.queue_declare(queue, durable=True)
        ch.queue_bind(names.sink, names.exchange, routing_key="bench.#")
    try:
        results = publish_sync(settings, names, ops, rounds)
        results += publish_aio(settings, names, ops, rounds)
        results += consume_sync(settings, names, consume, rounds)
        results += consume_aio(settings, names, consume, rounds)
    finally:
        with admin() as ch:
            for queue in names.queues:
                ch.queue_delete(queue)
            for exchange in (names.exchange, names.consume_exchange):
                ch.exchange_delete(exchange)
    return results, TARGETS


def _purge(names: Names) -> None:
    with admin() as ch:
        ch.queue_purge(names.sink)


def _emptied(names: Names, reopen: Callable[[], None]) -> Callable[[], None]:
    """A ``fresh`` for :func:`compare`: empty the queue the publishes go to, then ``reopen``.

    Every round then publishes into the same empty queue: left to grow over the rounds
    (by tens of thousands of persistent messages), it gives the broker more to do in
    later rounds than in earlier ones.
    """

    def fresh() -> None:
        _purge(names)
        reopen()

    return fresh


def prepare_cost(n: int = 2000) -> dict[str, float]:
    """The work before each publish, in microseconds: svclink's preparation (envelope, checks,
    ids, context) and the raw loop's (a message id, its envelope encoded, pika properties),
    back to back and right after sleeping as long as a sequential publisher waits for a
    confirm (0.8 ms).
    The difference is what a sleep costs code that runs after it on this machine (cold
    caches, a halted virtual CPU), paid once per publish."""
    settings = build({"service_name": "bench", "amqp_url": RABBITMQ_URL})
    publisher = svclink.sync.Publisher(settings)
    message = _message(settings, "bench", "bench.publish")

    def svclink_prepare() -> None:
        publisher._sending_one(
            "bench.publish", DATA, exchange="bench", event_id=None, headers=None, timeout=None,
            now=time.monotonic(), wall=time.time(),
        )  # fmt: skip

    def raw_prepare() -> None:
        _, event_id = _raw_event(message)
        _pika_properties(message, event_id)

    costs = {}
    for name, work in (("svclink", svclink_prepare), ("raw", raw_prepare)):
        for pause in (0.0, 0.0008):
            times = []
            for _ in range(n):
                if pause:
                    time.sleep(pause)
                started = time.perf_counter()
                work()
                times.append(time.perf_counter() - started)
            when = f"after {pause * 1000:g} ms sleep" if pause else "back to back"
            costs[f"{name} {when}"] = statistics.median(times) * 1e6
    return costs


# -- publishing ---------------------------------------------------------------------------


def _repeat(one: Callable[[], Any], n: int) -> Callable[[], None]:
    """A batch: ``one()`` ``n`` times."""

    def batch() -> None:
        for _ in range(n):
            one()

    return batch


def _sliced(ops: int, rounds: int) -> int:
    """The rounds of :data:`SLICE` publishes that make ``rounds`` rounds of ``ops``."""
    return max(1, rounds * ops // SLICE)


def _raw_event(message: OutgoingMessage, encode: bool = True) -> tuple[bytes, str]:
    """The body and id a raw publisher sends for one event like ``message``.

    A hand-written publisher makes each event's envelope, with a fresh id and time, and
    encodes it (compact JSON, as svclink's); ``encode=False`` re-sends ``message``'s body.
    """
    event_id = str(uuid.uuid4())
    if not encode:
        return message.body, event_id
    p = message.properties
    envelope = {
        "version": 1,
        "event_id": event_id,
        "event_type": message.routing_key,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": p.app_id,
        "context": {"request_id": p.correlation_id},
        "data": DATA,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode(), event_id


def _pika_properties(message: OutgoingMessage, event_id: str) -> pika.BasicProperties:
    p = message.properties
    return pika.BasicProperties(
        headers=dict(p.headers),
        message_id=event_id,
        type=p.type,
        app_id=p.app_id,
        correlation_id=p.correlation_id,
        timestamp=p.timestamp,
        content_type=p.content_type,
        delivery_mode=pika.DeliveryMode.Persistent,
    )


def _aio_message(message: OutgoingMessage, encode: bool = True) -> aio_pika.Message:
    p = message.properties
    body, event_id = _raw_event(message, encode)
    return aio_pika.Message(
        body,
        headers=dict(p.headers),
        message_id=event_id,
        type=p.type,
        app_id=p.app_id,
        correlation_id=p.correlation_id,
        timestamp=p.timestamp,
        content_type=p.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def publish_sync(settings: svclink.Settings, names: Names, ops: int, rounds: int) -> list[Result]:
    publisher = svclink.sync.Publisher(settings)
    message = _message(settings, names.exchange, "bench.publish")
    connection: Any = None
    channel: Any = None
    link: PikaLink | None = None

    def renew_publisher() -> None:
        publisher.close()
        publisher.publish("bench.publish", DATA, exchange=names.exchange)

    def renew_raw() -> None:
        nonlocal connection, channel
        if connection is not None:
            connection.close()
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        channel = connection.channel()
        channel.confirm_delivery()
        raw_one()

    def renew_link() -> None:
        nonlocal link
        if link is not None:
            link.close()
        link = PikaLink(settings, "bench-link", time.monotonic() + 10)
        link.publish([message], time.monotonic() + 30)

    reopen = rotating(renew_publisher, renew_raw, renew_link)
    fresh = _emptied(names, reopen)

    def raw_one(encode: bool = True) -> None:
        body, event_id = _raw_event(message, encode)
        properties = _pika_properties(message, event_id)
        channel.basic_publish(names.exchange, "bench.publish", body, properties, mandatory=True)

    def svclink_one() -> None:
        publisher.publish("bench.publish", DATA, exchange=names.exchange)

    def svclink_many() -> None:
        for _ in range(ops // BATCH):
            publisher.publish_many([("bench.publish", DATA)] * BATCH, exchange=names.exchange)

    def link_one() -> None:  # svclink's connection with a message made beforehand: the I/O alone
        assert link is not None
        link.publish([message], time.monotonic() + 30)

    try:
        reopen()
        variants = {
            "svclink": _repeat(svclink_one, SLICE),
            RAW_SYNC: _repeat(raw_one, SLICE),
            PRE_SYNC: _repeat(lambda: raw_one(encode=False), SLICE),
            LINK_ONLY: _repeat(link_one, SLICE),
        }
        results = compare("events publish sync", SLICE, _sliced(ops, rounds), variants, fresh=fresh)
        variants = {MANY: svclink_many, ONE_BY_ONE: _repeat(svclink_one, ops)}
        results += compare("events publish_many sync", ops, rounds, variants, fresh=fresh)
    finally:
        publisher.close()
        if link is not None:
            link.close()
        if connection is not None:
            connection.close()
    return results


def publish_aio(settings: svclink.Settings, names: Names, ops: int, rounds: int) -> list[Result]:
    runner = asyncio.Runner()
    publisher = svclink.aio.Publisher(settings)
    message = _message(settings, names.exchange, "bench.publish")
    connection: Any = None
    exchange: Any = None  # on svclink's connection
    own_exchange: Any = None  # on a connection of the raw side's own

    async def renew_publisher() -> None:
        nonlocal exchange
        await publisher.close()
        await svclink_one()  # opens this round's connection
        link = publisher._link()
        assert isinstance(link, AioPikaLink)
        exchange = await link._channel.declare_exchange(
            names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def renew_raw() -> None:
        nonlocal connection, own_exchange
        if connection is not None:
            await connection.close()
        connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await connection.channel(publisher_confirms=True)
        own_exchange = await channel.declare_exchange(
            names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await raw_one(own=True)

    reopen = rotating(lambda: runner.run(renew_publisher()), lambda: runner.run(renew_raw()))
    fresh = _emptied(names, reopen)

    async def svclink_one() -> None:
        await publisher.publish("bench.publish", DATA, exchange=names.exchange)

    async def raw_one(encode: bool = True, own: bool = False) -> None:
        target = own_exchange if own else exchange
        await target.publish(_aio_message(message, encode), "bench.publish", mandatory=True)

    def batches(one: Callable[[], Awaitable[None]], concurrency: int, n: int) -> Callable[[], None]:
        """``n`` publishes (a multiple of ``concurrency``), ``concurrency`` at a time."""

        async def go() -> None:
            for _ in range(n // concurrency):
                if concurrency == 1:
                    await one()
                else:
                    await asyncio.gather(*(one() for _ in range(concurrency)))

        return lambda: runner.run(go())

    async def svclink_many() -> None:
        for _ in range(ops // BATCH):
            await publisher.publish_many([("bench.publish", DATA)] * BATCH, exchange=names.exchange)

    results: list[Result] = []
    try:
        reopen()
        for concurrency in (1, 50):
            variants = {
                "svclink": batches(svclink_one, concurrency, SLICE),
                RAW_AIO: batches(raw_one, concurrency, SLICE),
                PRE_AIO: batches(lambda: raw_one(encode=False), concurrency, SLICE),
                OWN_AIO: batches(lambda: raw_one(own=True), concurrency, SLICE),
            }
            benchmark = f"events publish aio c={concurrency}"
            results += compare(benchmark, SLICE, _sliced(ops, rounds), variants, fresh=fresh)
        variants = {MANY: lambda: runner.run(svclink_many()), ONE_BY_ONE: batches(svclink_one, 1, ops)}
        results += compare("events publish_many aio", ops, rounds, variants, fresh=fresh)
    finally:
        runner.run(publisher.close())
        if connection is not None:
            runner.run(connection.close())
        runner.close()
    return results


# -- consuming ----------------------------------------------------------------------------


def _fill(settings: svclink.Settings, names: Names, n: int) -> None:
    """Put ``n`` svclink events straight into the work queue (raw, untimed) and wait until all are in."""
    message = _message(settings, names.consume_exchange, "bench.consume")
    with admin() as ch:
        for _ in range(n):
            ch.basic_publish("", names.queue, message.body, _pika_properties(message, str(uuid.uuid4())))
        deadline = time.monotonic() + 60
        while ch.queue_declare(names.queue, passive=True).method.message_count < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{names.queue} did not fill up to {n} messages")
            time.sleep(0.02)


def _consumer(module: Any, settings: svclink.Settings, names: Names) -> Any:
    return module.EventConsumer(
        names.queue,
        exchange=names.consume_exchange,
        bindings=["bench.#"],
        prefetch=PREFETCH,
        settings=settings,
    )


def consume_sync(settings: svclink.Settings, names: Names, n: int, rounds: int) -> list[Result]:
    def svclink_drain() -> None:
        consumer: svclink.sync.EventConsumer = _consumer(svclink.sync, settings, names)
        handled = 0

        @consumer.on("bench.consume")
        def handle(_event: svclink.sync.Event) -> None:
            nonlocal handled
            handled += 1
            if handled == n:
                consumer.stop()  # run() returns once this message is acked

        consumer.run()

    def raw_drain() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        channel = connection.channel()
        topo = names.topology
        channel.exchange_declare(topo.exchange, exchange_type="topic", durable=True)
        for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
            channel.queue_declare(spec.name, durable=True, arguments=dict(spec.arguments))
        for pattern in topo.bindings:
            channel.queue_bind(topo.queue.name, topo.exchange, routing_key=pattern)
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=PREFETCH)
        handled = 0

        def on_message(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
            nonlocal handled
            json.loads(body)
            ch.basic_ack(method.delivery_tag)
            handled += 1
            if handled == n:
                ch.stop_consuming()

        channel.basic_consume(names.queue, on_message)
        channel.start_consuming()
        connection.close()

    fill = lambda: _fill(settings, names, n)  # noqa: E731
    variants = {"svclink EventConsumer": svclink_drain, "pika basic_consume": raw_drain}
    return compare("events consume sync", n, rounds, variants, before=fill)


def consume_aio(settings: svclink.Settings, names: Names, n: int, rounds: int) -> list[Result]:
    async def svclink_drain() -> None:
        consumer: svclink.aio.EventConsumer = _consumer(svclink.aio, settings, names)
        handled = 0

        @consumer.on("bench.consume")
        async def handle(_event: svclink.aio.Event) -> None:
            nonlocal handled
            handled += 1
            if handled == n:
                consumer.stop()

        await consumer.run()

    async def raw_drain() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=PREFETCH)
        topo = names.topology
        exchange = await channel.declare_exchange(topo.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        for spec in (*topo.retry_queues, topo.dead_queue):
            await channel.declare_queue(spec.name, durable=True, arguments=dict(spec.arguments))
        queue = await channel.declare_queue(names.queue, durable=True, arguments=dict(topo.queue.arguments))
        for pattern in topo.bindings:
            await queue.bind(exchange, routing_key=pattern)
        done = asyncio.Event()
        handled = 0

        async def on_message(message: Any) -> None:
            nonlocal handled
            json.loads(message.body)
            await message.ack()
            handled += 1
            if handled == n:
                done.set()

        tag = await queue.consume(on_message)
        await done.wait()
        await queue.cancel(tag)
        await connection.close()

    fill = lambda: _fill(settings, names, n)  # noqa: E731
    variants = {
        "svclink EventConsumer": lambda: asyncio.run(svclink_drain()),
        "aio-pika consume": lambda: asyncio.run(raw_drain()),
    }
    return compare("events consume aio", n, rounds, variants, before=fill)
