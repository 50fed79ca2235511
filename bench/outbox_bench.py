"""The outbox's cost: relay throughput against ``publish_many``; latency from commit to consumer.

``python -m bench.outbox_bench [--events 5000] [--rounds 3] [--latency 200]``, with PostgreSQL
on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672.

Throughput: the same events are published with confirms twice in each round, in alternating
order: by ``publish_many`` in batches of the relay's batch size, and by the relay from the
outbox table (claim the rows FOR UPDATE SKIP LOCKED, publish, delete them after the confirms),
on the sync and the aio side. The rows are written before the relay's clock starts.

Latency: one event at a time, the time from the commit of ``publish_on_commit``'s transaction
to a consumer's handler, through the relay woken by LISTEN/NOTIFY (the send after commit
turned off), through the send after commit, and (for reference) from a plain ``publish``
call to the handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import svclink
import svclink.aio
import svclink.sync
from svclink.aio.relay import Relay as AsyncRelay
from svclink.contrib.sqlalchemy import AsyncSqlOutbox, SqlOutbox, publish_on_commit
from svclink.contrib.sqlalchemy.tables import OUTBOX
from svclink.core.events.outbox import DEFAULT_BATCH_SIZE, outbox_row
from svclink.sync.relay import Relay

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    name = f"svclink_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def sink(exchange: str) -> Iterator[str]:
    """A queue bound to everything on ``exchange``, purged as the run goes and deleted after it."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    queue = f"{exchange}.sink"
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="#")
    try:
        yield queue
    finally:
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
        connection.close()


def purge(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    connection.channel().queue_purge(queue)
    connection.close()


def write_rows(url: str, events: int, exchange: str) -> None:
    """``events`` outbox rows, as publish_on_commit writes them, in one transaction."""
    settings = svclink.get_settings()
    rows = [
        outbox_row(settings, "bench.created", {"i": i}, exchange=exchange, event_id=None, headers=None,
                   wall=time.time())[1]
        for i in range(events)
    ]  # fmt: skip
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(OUTBOX), [attrs.asdict(row) for row in rows])
    engine.dispose()


def throughput(url: str, events: int, rounds: int, exchange: str, queue: str) -> dict[str, list[float]]:
    """Events per second of each way to publish, one figure per round."""
    rates: dict[str, list[float]] = {
        "publish_many sync": [],
        "relay sync": [],
        "publish_many aio": [],
        "relay aio": [],
    }
    batches = [[("bench.created", {"i": i}) for i in range(start, min(events, start + DEFAULT_BATCH_SIZE))]
               for start in range(0, events, DEFAULT_BATCH_SIZE)]  # fmt: skip
    publisher = svclink.sync.Publisher()

    def publish_many_sync() -> None:
        for batch in batches:
            publisher.publish_many(batch, exchange=exchange)

    store = SqlOutbox(url)

    def relay_sync() -> None:
        counts = Relay(store, publisher=publisher).run_once()
        assert counts.sent == events, counts

    loop = asyncio.new_event_loop()
    aio_publisher = loop.run_until_complete(_aio_publisher())
    aio_store = AsyncSqlOutbox(url)

    def publish_many_aio() -> None:
        async def go() -> None:
            for batch in batches:
                await aio_publisher.publish_many(batch, exchange=exchange)

        loop.run_until_complete(go())

    def relay_aio() -> None:
        counts = loop.run_until_complete(AsyncRelay(aio_store, publisher=aio_publisher).run_once())
        assert counts.sent == events, counts

    ways: dict[str, tuple[Callable[[], None], bool]] = {
        "publish_many sync": (publish_many_sync, False),
        "relay sync": (relay_sync, True),
        "publish_many aio": (publish_many_aio, False),
        "relay aio": (relay_aio, True),
    }
    for round_ in range(rounds):
        order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
        for name in order:
            run, needs_rows = ways[name]
            if needs_rows:
                write_rows(url, events, exchange)
            started = time.perf_counter()
            run()
            rates[name].append(events / (time.perf_counter() - started))
            purge(queue)
    publisher.close()
    store.close()
    loop.run_until_complete(aio_publisher.close())
    loop.run_until_complete(aio_store.aclose())
    loop.run_until_complete(aio_store.engine.dispose())
    loop.close()
    return rates


async def _aio_publisher() -> svclink.aio.Publisher:
    return svclink.aio.Publisher()


def latency(url: str, count: int, exchange: str) -> dict[str, list[float]]:
    """Milliseconds from commit (or publish call) to the handler, one event at a time."""
    arrived: dict[str, float] = {}
    got = threading.Event()
    consumer = svclink.sync.EventConsumer(f"{exchange}.latency", exchange=exchange, exclusive=True)

    @consumer.on("bench.latency")
    def handle(event: Any) -> None:
        arrived[event.event_id] = time.perf_counter()
        got.set()

    threading.Thread(target=consumer.run, daemon=True).start()
    time.sleep(1.0)  # declared and consuming
    engine = create_engine(url)
    relay = Relay(SqlOutbox(url))
    relay_thread = threading.Thread(target=relay.run, daemon=True)
    relay_thread.start()
    time.sleep(0.5)  # listening
    results: dict[str, list[float]] = {
        "relay (LISTEN/NOTIFY)": [],
        "send after commit": [],
        "plain publish": [],
    }
    publisher = svclink.sync.get_publisher()
    for i in range(count * 3):
        way = list(results)[i % 3]
        svclink.configure(amqp_url=AMQP_URL, outbox_send_after_commit=way == "send after commit")
        got.clear()
        if way == "plain publish":
            started = time.perf_counter()
            event = publisher.publish("bench.latency", {"i": i}, exchange=exchange)
        else:
            with Session(engine) as session, session.begin():
                event = publish_on_commit(session, "bench.latency", {"i": i}, exchange=exchange)
                started = time.perf_counter()  # the commit follows
        if not got.wait(5):
            raise RuntimeError(f"event {i} ({way}) did not arrive")
        while event.event_id not in arrived:
            got.wait(0.01)
        results[way].append((arrived[event.event_id] - started) * 1000)
    relay.stop()
    relay_thread.join(5)
    consumer.stop()
    engine.dispose()
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="outbox relay throughput and commit-to-consumer latency")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=int, default=200, help="events per way in the latency run")
    args = parser.parse_args(argv)
    svclink.configure(amqp_url=AMQP_URL, service_name="bench")
    exchange = f"bench.outbox.{uuid.uuid4().hex[:8]}"
    with scratch_database() as url, sink(exchange) as queue:
        engine = create_engine(url)
        OUTBOX.metadata.create_all(engine)
        engine.dispose()
        rates = throughput(url, args.events, args.rounds, exchange, queue)
        print(f"throughput, {args.events} events x {args.rounds} rounds (events/s, median of rounds)")
        for side in ("sync", "aio"):
            base = statistics.median(rates[f"publish_many {side}"])
            relayed = statistics.median(rates[f"relay {side}"])
            ratio = relayed / base
            print(
                f"  {side:4} publish_many {base:8.0f}   relay {relayed:8.0f}   relay/publish_many {ratio:.2f}"
            )
        times = latency(url, args.latency, exchange)
        print(f"latency to the consumer's handler, {args.latency} events each (ms)")
        for way, values in times.items():
            print(f"  {way:22} p50 {percentile(values, 0.5):6.2f}   p95 {percentile(values, 0.95):6.2f}   "
                  f"max {max(values):6.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
