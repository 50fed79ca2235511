"""Resources that belong to one event loop and are closed when that loop shuts down.

An httpx client or an AMQP connection made on a loop can only be used, and closed, on
that loop. ``asyncio.run()`` and ``asyncio.Runner.close()`` finalise every async
generator still suspended while the loop can still run (``loop.shutdown_asyncgens()``),
so parking an async generator whose ``finally`` closes the resource closes it cleanly at
the end of each run, instead of leaving it to the garbage collector (whose warnings are
"Task was destroyed but it is pending", "Event loop is closed", ResourceWarning).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any


async def _close_at_shutdown(close: Callable[[], Awaitable[object]]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await close()


async def close_with_loop(close: Callable[[], Awaitable[object]]) -> AsyncGenerator[None, None]:
    """Have ``close()`` awaited when the running loop shuts down its async generators.

    Returns the parked generator: keep a reference to it for as long as the resource lives
    (the loop holds it weakly), and ``await closer.aclose()`` to close the resource sooner.
    """
    closer = _close_at_shutdown(close)
    await closer.__anext__()  # first iteration: the loop registers it; parked until shutdown
    return closer


#: closes started by :func:`close_soon` and not yet done (a task is only weakly held by its loop)
_closing: set[asyncio.Future[Any]] = set()


def close_soon(close: Awaitable[object]) -> None:
    """Run ``close`` on the running loop without waiting for it.

    For a connection given up on (dead, or its broker not answering): aiormq waits up to
    2 s for the broker's reply to a close, and the publish that gave up must not.
    """
    task = asyncio.ensure_future(close)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def closes_done() -> None:
    """Wait for the closes :func:`close_soon` started on the running loop."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(task for task in list(_closing) if task.get_loop() is loop))
