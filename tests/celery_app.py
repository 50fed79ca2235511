"""The Celery app of the tests: tasks that call service C and publish events, with svclink installed.

The worker runs in its own process (started by the tests) and takes its svclink settings
from ``SVCLINK_*`` variables; the test process configures its own. The queue is chosen per
test run (``app.conf.task_default_queue`` here, ``-Q`` for the worker).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import attrs
from celery import Celery

import svclink
import svclink.aio
import svclink.sync
from svclink.context import current
from svclink.contrib.celery import install

app = Celery(
    "svclink_tests",
    broker=os.environ.get("SVCLINK_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.update(
    task_default_queue=os.environ.get("SVCLINK_TEST_CELERY_QUEUE", "svclink-tests"),
    broker_connection_retry_on_startup=True,
    result_expires=600,
    worker_hijack_root_logger=False,
)
install(app)


def report(task: Any, **extra: Any) -> dict[str, Any]:
    """What the task saw: the bound context and the verdict on who sent it."""
    context = current()
    caller = task.request.svclink
    return {
        "request_id": context.request_id if context else None,
        "user_id": context.user_id if context else None,
        "caller": context.caller_service if context else None,
        "verified": caller.verified,
        "reason": caller.reason,
        "pid": os.getpid(),
        **extra,
    }


def use_transport(side: str, transport: str) -> None:
    """Have this worker process's calls on ``side`` go over ``transport`` from now on."""
    settings = svclink.get_settings()
    if getattr(settings, f"{side}_transport") != transport:
        svclink.core.settings.install(attrs.evolve(settings, **{f"{side}_transport": transport}))


@app.task(bind=True)
def call_c(self: Any, path: str, side_id: str) -> dict[str, Any]:
    """Call service C at ``path`` through one side and transport ("aio-aiohttp", say)."""
    side, transport = side_id.split("-")
    use_transport(side, transport)
    if side == "sync":
        body = svclink.sync.get_service("c").http_dispatch("GET", path)
    else:

        async def call() -> Any:
            c = await svclink.aio.get_service("c")
            return await c.http_dispatch("GET", path)

        body = asyncio.run(call())
    return report(self, body=body)


@app.task(bind=True)
def publish(self: Any, exchange: str, event_type: str, side: str) -> dict[str, Any]:
    """Publish ``event_type`` on ``exchange`` from the worker, through either side."""
    if side == "sync":
        svclink.sync.get_publisher().publish(event_type, {"from": "task"}, exchange=exchange)
    else:

        async def send() -> None:
            publisher = await svclink.aio.get_publisher()
            await publisher.publish(event_type, {"from": "task"}, exchange=exchange)

        asyncio.run(send())
    return report(self)
