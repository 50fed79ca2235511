"""Resources that belong to one event loop and are closed when that loop shuts down.

An httpx client or an AMQP connection made on a loop can only be used, and closed, on
that loop. ``asyncio.run()`` and ``asyncio.Runner.close()`` finalise every async
generator still suspended while the loop can still run (``loop.shutdown_asyncgens()``),
so parking an async generator whose ``finally`` closes the resource closes it cleanly at
the end of each run, instead of leaving it to the garbage collector (whose warnings are
"Task was destroyed but it is pending", "Event loop is closed", ResourceWarning).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable


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
