"""Instructions per aio publish, counted by valgrind: svclink against raw aio-pika.

``python bench/instructions.py`` (needs ``valgrind``; two to eight minutes here, as busy as the machine is).

A wall-clock ratio on a small machine shared with the broker strays by several per cent
from run to run (see ``docs/performance.rst``). The number of instructions the client
executes per publish does not: callgrind counts every instruction of the Python process
(the interpreter, the garbage collector, the C parts of aiormq and pamqp), whatever else
the machine is doing. Each publisher runs twice under callgrind, with ``LOW`` and
``HIGH`` publishes after the same start-up; the difference over ``HIGH - LOW`` is the
cost of one publish, with connecting and importing cancelled out. The publishers are
those of ``bench_events`` (svclink's, the raw one that encodes each event, the raw one
re-sending a pre-encoded body), sequential and with 50 in flight. It counts work, not
time: memory traffic and how the work interleaves with the broker's are not in it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika

import svclink.aio
from bench.bench_events import DATA, RABBITMQ_URL, _aio_message, _message, admin
from svclink.core.settings import build

KINDS = ("svclink", "raw", "pre-encoded")
LOW, HIGH = 200, 1200  # publishes in the two runs of each publisher (multiples of 50)


def publish(kind: str, concurrency: int, n: int) -> None:
    """Publish ``n`` events the way ``kind`` does, ``concurrency`` at a time (the measured child)."""
    exchange_name = queue = f"svclink.bench.instructions.{uuid.uuid4().hex[:8]}"
    with admin() as channel:
        channel.exchange_declare(exchange_name, "topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange_name, "#")
    settings = build({"service_name": "bench", "amqp_url": RABBITMQ_URL, "publish_timeout": 30})
    message = _message(settings, exchange_name, "bench.publish")

    async def run() -> None:
        publisher = svclink.aio.Publisher(settings)
        connection = None if kind == "svclink" else await aio_pika.connect(RABBITMQ_URL)
        if connection is not None:
            channel = await connection.channel(publisher_confirms=True)
            topic = aio_pika.ExchangeType.TOPIC
            exchange = await channel.declare_exchange(exchange_name, topic, durable=True)

        async def one() -> None:
            if connection is None:
                await publisher.publish("bench.publish", DATA, exchange=exchange_name)
            else:
                await exchange.publish(_aio_message(message, kind == "raw"), "bench.publish", mandatory=True)

        await one()  # the connection is open and warm before the counted publishes
        for _ in range(n // concurrency):
            if concurrency == 1:
                await one()
            else:
                await asyncio.gather(*(one() for _ in range(concurrency)))
        await publisher.close()
        if connection is not None:
            await connection.close()

    try:
        asyncio.run(run())
    finally:
        with admin() as channel:
            channel.queue_delete(queue)
            channel.exchange_delete(exchange_name)


def count(kind: str, concurrency: int, n: int) -> int:
    """The instructions callgrind counts in a child that makes ``n`` publishes."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", kind, str(concurrency), str(n),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 1
    runs = [(kind, c, n) for c in (1, 50) for kind in KINDS for n in (LOW, HIGH)]
    with ThreadPoolExecutor(2) as pool:  # two at a time: the counts do not depend on it
        counts = dict(zip(runs, pool.map(lambda run: count(*run), runs), strict=True))
    print(f"instructions per publish ({HIGH - LOW} publishes between the two runs of each):")
    for c in (1, 50):
        per = {kind: (counts[kind, c, HIGH] - counts[kind, c, LOW]) / (HIGH - LOW) for kind in KINDS}
        ratios = ", ".join(f"svclink / {kind} {per['svclink'] / per[kind]:.3f}" for kind in KINDS[1:])
        figures = ", ".join(f"{kind} {per[kind] / 1000:.0f}k" for kind in KINDS)
        print(f"  {c} in flight: {figures}; {ratios}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        publish(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
