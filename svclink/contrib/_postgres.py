"""The relay's wake-up on PostgreSQL: ``LISTEN`` on a connection of its own, ``NOTIFY`` on commit.

``publish_on_commit`` sends ``NOTIFY svclink_outbox`` in the transaction that writes the row,
and PostgreSQL delivers it only when that transaction commits, so a relay waiting here wakes
as the row becomes visible instead of at its next poll. A lost connection only costs the
wake-up: the relay polls anyway, and the listener reconnects on its next wait.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from ..core.events.outbox import NOTIFY_CHANNEL
from ..core.logs import logger

log = logger("svclink.outbox")

#: the statement that announces a new outbox row (delivered when the transaction commits)
NOTIFY_SQL = f"NOTIFY {NOTIFY_CHANNEL}"
LISTEN_SQL = f"LISTEN {NOTIFY_CHANNEL}"


def listen_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` becomes ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


class Listener:
    """Waits for ``NOTIFY svclink_outbox`` on a connection of its own (psycopg 3), opened on first use."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None

    def wait(self, timeout: float) -> None:
        """Return at the first notification, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            if self._conn is None:
                conn = self._connect()
                conn.autocommit = True
                conn.execute(LISTEN_SQL)
                self._conn = conn
            for _ in self._conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
                pass
        except Exception as exc:  # the wake-up is an optimisation: fall back to the poll
            log.warning("outbox relay: LISTEN failed (%s); polling", exc)
            self.close()
            time.sleep(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class AsyncListener:
    """:class:`Listener` for asyncio (``psycopg.AsyncConnection``)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None

    async def wait(self, timeout: float) -> None:
        import asyncio

        import psycopg

        deadline = time.monotonic() + timeout
        try:
            if self._conn is None:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                await conn.execute(LISTEN_SQL)
                self._conn = conn
            async for _ in self._conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
                pass
        except Exception as exc:
            log.warning("outbox relay: LISTEN failed (%s); polling", exc)
            await self.close()
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
