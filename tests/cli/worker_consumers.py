"""Consumers that ``svclink worker`` runs in the worker tests, configured by the environment.

``WORKER_SIDE`` (sync, aio, or both: a list ``both`` of one of each), ``WORKER_QUEUE``,
``WORKER_EXCHANGE``, ``WORKER_SLEEP`` (the handler's seconds), ``WORKER_LOG`` (a file: one
``start <n>`` and one ``done <n>`` line per handled event, written as they happen),
``WORKER_MAX_ATTEMPTS``, ``WORKER_RETRY_DELAY``, ``WORKER_AMQP_URL`` (the consumers' broker,
when it is not the worker's: the outbox relay's tests give the relay a broker of its own).
An event whose data says ``fail`` fails.
"""

from __future__ import annotations

import asyncio
import os
import time

import attrs

import svclink.aio
import svclink.sync

SIDE = os.environ["WORKER_SIDE"]
SLEEP = float(os.environ.get("WORKER_SLEEP", "0"))
LOG = os.environ.get("WORKER_LOG")
ARGS = dict(
    exchange=os.environ["WORKER_EXCHANGE"],
    bindings=["work.#"],
    max_attempts=int(os.environ.get("WORKER_MAX_ATTEMPTS", "5")),
    retry_delays=[float(os.environ.get("WORKER_RETRY_DELAY", "1"))],
)
if "WORKER_AMQP_URL" in os.environ:
    ARGS["settings"] = attrs.evolve(svclink.get_settings(), amqp_url=os.environ["WORKER_AMQP_URL"])


def note(what: str, event: svclink.sync.Event) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(f"{what} {event.data['n']} {event.attempt}\n")


def sync_consumer(queue: str) -> svclink.sync.EventConsumer:
    made = svclink.sync.EventConsumer(queue, **ARGS)  # type: ignore[arg-type]

    @made.on("work.#")
    def handle(event: svclink.sync.Event) -> None:
        note("start", event)
        time.sleep(SLEEP)
        if event.data.get("fail"):
            raise RuntimeError("asked to fail")
        note("done", event)

    return made


def aio_consumer(queue: str) -> svclink.aio.EventConsumer:
    made = svclink.aio.EventConsumer(queue, **ARGS)  # type: ignore[arg-type]

    @made.on("work.#")
    async def handle(event: svclink.aio.Event) -> None:
        note("start", event)
        await asyncio.sleep(SLEEP)
        if event.data.get("fail"):
            raise RuntimeError("asked to fail")
        note("done", event)

    return made


QUEUE = os.environ["WORKER_QUEUE"]
if SIDE == "both":  # a sync and an aio consumer in one process, each on a queue of its own
    both = [sync_consumer(QUEUE + ".sync"), aio_consumer(QUEUE + ".aio")]
else:
    consumer = sync_consumer(QUEUE) if SIDE == "sync" else aio_consumer(QUEUE)
