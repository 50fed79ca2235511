"""The inbox for SQLAlchemy, sync and asyncio: a deduplicating handler runs in the session that
records its event, and both commit together or neither does.

.. code-block:: python

    consumer = EventConsumer("shipping.orders", dedupe=SqlInbox(sessionmaker(engine)))

    @consumer.on("order.created")
    def ship(event):
        inbox_session().add(Shipment(order_id=event.data["order_id"]))

The handler reaches the session with :func:`inbox_session` (an ``AsyncSession`` under
:class:`AsyncSqlInbox`); the store commits it once the handler returns.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert

from .tables import INBOX

_session: contextvars.ContextVar[Session | AsyncSession] = contextvars.ContextVar("svclink_inbox_session")


def inbox_session() -> Any:
    """The session of the deduplicating handler running now (a ``Session``, or an ``AsyncSession``
    under :class:`AsyncSqlInbox`): write through it, and the writes commit with the inbox row."""
    try:
        return _session.get()
    except LookupError:
        raise RuntimeError("inbox_session() is only set while a handler with an SQL inbox runs") from None


def _record(dialect: str, queue: str, event_id: str) -> Insert:
    """The insert that records an event; on PostgreSQL and SQLite a duplicate inserts nothing."""
    values = {"queue": queue, "event_id": event_id, "handled_at": datetime.now(UTC)}
    if dialect == "postgresql":
        return postgresql.insert(INBOX).values(**values).on_conflict_do_nothing().returning(INBOX.c.id)
    if dialect == "sqlite":
        return sqlite.insert(INBOX).values(**values).on_conflict_do_nothing().returning(INBOX.c.id)
    return insert(INBOX).values(**values)


def _nothing_inserted(result: Any) -> bool:
    """Whether the insert found the event recorded already (it returned no row)."""
    return bool(result.returns_rows) and result.first() is None


def _prune(before: datetime) -> Any:
    return delete(INBOX).where(INBOX.c.handled_at < before)


class SqlInbox:
    """Records handled events in the inbox table, in the handler's own ``Session`` transaction.

    ``sessions`` makes the sessions (a ``sessionmaker``). If the handler raises, neither its
    writes nor the inbox row are kept and the event is retried; if it returns, both commit
    before the message is acked, and a later delivery of the event is acked unhandled.
    """

    asynchronous = False

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def once(self, queue: str, event_id: str, call: Callable[[], Any]) -> bool:
        with self.sessions() as session, session.begin():
            dialect = session.get_bind().dialect.name
            try:
                result: Any = session.execute(_record(dialect, queue, event_id))
            except IntegrityError:  # another dialect's duplicate
                return False
            if _nothing_inserted(result):
                return False
            token = _session.set(session)
            try:
                call()
            finally:
                _session.reset(token)
        return True

    def prune(self, before: datetime) -> int:
        """Forget the events handled before ``before``; answers how many rows went."""
        with self.sessions() as session, session.begin():
            result: Any = session.execute(_prune(before))
            return int(result.rowcount)


class AsyncSqlInbox:
    """:class:`SqlInbox` for svclink.aio consumers, on an ``AsyncSession`` (``async_sessionmaker``)."""

    asynchronous = True

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def once(self, queue: str, event_id: str, call: Callable[[], Awaitable[Any]]) -> bool:
        async with self.sessions() as session, session.begin():
            dialect = session.sync_session.get_bind().dialect.name
            try:
                result: Any = await session.execute(_record(dialect, queue, event_id))
            except IntegrityError:
                return False
            if _nothing_inserted(result):
                return False
            token = _session.set(session)
            try:
                await call()
            finally:
                _session.reset(token)
        return True

    async def prune(self, before: datetime) -> int:
        async with self.sessions() as session, session.begin():
            result: Any = await session.execute(_prune(before))
            return int(result.rowcount)
