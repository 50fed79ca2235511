"""How much ``concurrency`` speeds up a consumer whose handler waits (I/O, a call to another service).

``python -m bench.worker_concurrency [--events 1000] [--sleep 0.05] [--concurrency 10] [--side sync|aio]``,
with RabbitMQ on 127.0.0.1:5672.

For each side, the same number of events is put in a fresh queue (declared as the
consumer declares it) before the clock starts; then an ``EventConsumer`` whose handler
sleeps ``--sleep`` seconds (``time.sleep`` on the sync side, ``asyncio.sleep`` on the aio
side) drains it, once with ``concurrency=1`` and once with ``--concurrency``. The clock
runs from ``run()`` to the last handler's return, connecting and declaring included. The
line printed per side is the two drain times and their ratio; with a 50 ms handler and
concurrency 10 the ideal is 10x, and the target is at least 8x.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import svclink
import svclink.aio
import svclink.sync
from svclink.core.events.topology import ConsumerConfig, topology

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TARGET = 8.0


@contextmanager
def filled_queue(settings: svclink.Settings, events: int) -> Iterator[str]:
    """A fresh queue on a fresh exchange holding ``events`` events, deleted afterwards."""
    name = f"bench.worker.{uuid.uuid4().hex[:10]}"
    admin = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = admin.channel()
    topo = topology(ConsumerConfig(queue=name, exchange=name, bindings=["bench.#"]))
    channel.exchange_declare(name, exchange_type="topic", durable=True)
    for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
        channel.queue_declare(spec.name, durable=True, arguments=dict(spec.arguments))
    channel.queue_bind(name, name, routing_key="bench.#")
    publisher = svclink.sync.Publisher(settings)
    for start in range(0, events, 500):
        publisher.publish_many(
            [("bench.job", {"n": n}) for n in range(start, min(events, start + 500))], exchange=name
        )
    publisher.close()
    try:
        yield name
    finally:
        for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
            channel.queue_delete(spec.name)
        channel.exchange_delete(name)
        admin.close()


def drain_sync(settings: svclink.Settings, queue: str, events: int, sleep: float, concurrency: int) -> float:
    consumer = svclink.sync.EventConsumer(
        queue, exchange=queue, bindings=["bench.#"], concurrency=concurrency, settings=settings
    )
    done = threading.Event()
    handled = [0]
    lock = threading.Lock()
    finished = [0.0]

    @consumer.on("bench.job")
    def handle(_event: svclink.sync.Event) -> None:
        time.sleep(sleep)
        with lock:
            handled[0] += 1
            if handled[0] == events:
                finished[0] = time.perf_counter()
                done.set()
                consumer.stop()

    started = time.perf_counter()
    consumer.run()
    assert done.is_set(), f"drained {handled[0]} of {events}"
    return finished[0] - started


def drain_aio(settings: svclink.Settings, queue: str, events: int, sleep: float, concurrency: int) -> float:
    async def drain() -> float:
        consumer = svclink.aio.EventConsumer(
            queue, exchange=queue, bindings=["bench.#"], concurrency=concurrency, settings=settings
        )
        handled = [0]
        finished = [0.0]

        @consumer.on("bench.job")
        async def handle(_event: svclink.aio.Event) -> None:
            await asyncio.sleep(sleep)
            handled[0] += 1
            if handled[0] == events:
                finished[0] = time.perf_counter()
                consumer.stop()

        started = time.perf_counter()
        await consumer.run()
        assert handled[0] >= events, f"drained {handled[0]} of {events}"
        return finished[0] - started

    return asyncio.run(drain())


DRAINS: dict[str, Any] = {"sync": drain_sync, "aio": drain_aio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--sleep", type=float, default=0.05, help="the handler's seconds")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--side", choices=sorted(DRAINS), action="append", help="default: both")
    args = parser.parse_args(argv)
    settings = svclink.configure(amqp_url=AMQP_URL, service_name="bench-worker")
    failed = False
    print(f"{args.events} events, handler {args.sleep * 1000:g} ms; concurrency 1 against {args.concurrency}")
    for side in args.side or ["sync", "aio"]:
        times = {}
        for concurrency in (1, args.concurrency):
            with filled_queue(settings, args.events) as queue:
                times[concurrency] = DRAINS[side](settings, queue, args.events, args.sleep, concurrency)
        ratio = times[1] / times[args.concurrency]
        verdict = "ok" if ratio >= TARGET else f"BELOW the {TARGET:g}x target"
        print(
            f"{side:>4}: concurrency 1 {times[1]:6.2f} s, concurrency {args.concurrency} "
            f"{times[args.concurrency]:6.2f} s: {ratio:.1f}x faster ({verdict})",
            flush=True,
        )
        failed = failed or ratio < TARGET
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
