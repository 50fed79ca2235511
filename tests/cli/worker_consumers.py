"""Consumers that ``svclink worker`` runs in the worker tests, configured by the environment.

``WORKER_SIDE`` (sync or aio), ``WORKER_QUEUE``, ``WORKER_EXCHANGE``, ``WORKER_SLEEP`` (the
handler's seconds), ``WORKER_LOG`` (a file: one ``start <n>`` and one ``done <n>`` line per
handled event, written as they happen), ``WORKER_MAX_ATTEMPTS``, ``WORKER_RETRY_DELAY``.
An event whose data says ``fail`` fails.
"""

from __future__ import annotations

import asyncio
import os
import time

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


def note(what: str, event: svclink.sync.Event) -> None:
    if LOG:
        with open(LOG, "a") as f:
            f.write(f"{what} {event.data['n']} {event.attempt}\n")


if SIDE == "sync":
    consumer = svclink.sync.EventConsumer(os.environ["WORKER_QUEUE"], **ARGS)  # type: ignore[arg-type]

    @consumer.on("work.#")
    def handle(event: svclink.sync.Event) -> None:
        note("start", event)
        time.sleep(SLEEP)
        if event.data.get("fail"):
            raise RuntimeError("asked to fail")
        note("done", event)

else:
    consumer = svclink.aio.EventConsumer(os.environ["WORKER_QUEUE"], **ARGS)  # type: ignore[arg-type]

    @consumer.on("work.#")
    async def handle_async(event: svclink.aio.Event) -> None:
        note("start", event)
        await asyncio.sleep(SLEEP)
        if event.data.get("fail"):
            raise RuntimeError("asked to fail")
        note("done", event)
