"""The transactional outbox for SQLAlchemy, sync and asyncio: ``publish_on_commit`` and the relay's stores.

.. code-block:: python

    with Session(engine) as session, session.begin():
        session.add(Order(...))
        publish_on_commit(session, "order.created", {"order_id": 7})

    async with AsyncSession(engine) as session, session.begin():
        session.add(Order(...))
        await publish_on_commit(session, "order.created", {"order_id": 7})

The event is written in the session's transaction; once it commits the event is sent at
once (best effort: on a thread's turn for a Session, as a task on the running loop for an
AsyncSession) and for sure by the relay (``svclink relay --database-url URL``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast, overload

import attrs
from sqlalchemy import Engine, Select, delete, event, func, insert, select, text, update
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Delete, Update

from ...core.events.envelope import Event
from ...core.events.outbox import (
    FAILED,
    FAILED_COLUMNS,
    PENDING,
    SENT,
    STATUS_FAILURES,
    STORED_COLUMNS,
    FailedRow,
    RelayCounts,
    RowUpdate,
    StoredRow,
    outbox_row,
    row_writes,
)
from ...core.settings import get_settings
from .._postgres import NOTIFY_SQL, AsyncListener, Listener, listen_url
from .engines import engine_of
from .tables import OUTBOX

#: ``session.info`` keys: the outbox rows this transaction wrote; an AsyncSession's engine
_IDS = "svclink_outbox_ids"
_ASYNC_ENGINE = "svclink_outbox_async_engine"

#: the sends after commit under way on event loops (kept so that they are not collected)
_sending: set[asyncio.Task[None]] = set()


@overload
def publish_on_commit(
    session: AsyncSession,
    event_type: str,
    data: Any,
    *,
    exchange: str | None = None,
    event_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    format: str | None = None,
) -> Coroutine[Any, Any, Event]: ...


@overload
def publish_on_commit(
    session: Session,
    event_type: str,
    data: Any,
    *,
    exchange: str | None = None,
    event_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    format: str | None = None,
) -> Event: ...


def publish_on_commit(
    session: Session | AsyncSession,
    event_type: str,
    data: Any,
    *,
    exchange: str | None = None,
    event_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    format: str | None = None,
) -> Event | Coroutine[Any, Any, Event]:
    """Publish an event if, and only if, ``session``'s transaction commits (awaited for an AsyncSession).

    The message is built now, with the request context bound now, and bad arguments raise
    :class:`~svclink.InvalidEvent` here, before anything is written; ``format`` is publish's
    (``"flat"`` for hand-written consumers). Returns the event as it will be sent.
    """
    built, row = outbox_row(
        get_settings(), event_type, data, exchange=exchange, event_id=event_id, headers=headers,
        wall=time.time(), layout=format,
    )  # fmt: skip
    values = attrs.asdict(row)
    if isinstance(session, AsyncSession):
        return _publish_async(session, built, values)
    if not isinstance(session, Session):
        raise TypeError(f"publish_on_commit needs a Session or an AsyncSession, not {type(session).__name__}")
    row_id = _row_id(session.execute(insert(OUTBOX).values(**values)))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(NOTIFY_SQL))
    session.info.setdefault(_IDS, []).append(row_id)
    return built


def _row_id(result: Any) -> int:
    """The id of the row an insert made."""
    key = cast(CursorResult[Any], result).inserted_primary_key
    assert key is not None
    return int(key[0])


async def _publish_async(session: AsyncSession, built: Event, values: dict[str, Any]) -> Event:
    row_id = _row_id(await session.execute(insert(OUTBOX).values(**values)))
    if session.sync_session.get_bind().dialect.name == "postgresql":
        await session.execute(text(NOTIFY_SQL))
    info = session.sync_session.info
    info.setdefault(_IDS, []).append(row_id)
    info[_ASYNC_ENGINE] = session.bind
    return built


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    ids = session.info.pop(_IDS, None)
    engine = session.info.pop(_ASYNC_ENGINE, None)
    if not ids:
        return
    if engine is None:
        from ...sync.relay import send_after_commit

        send_after_commit(SqlOutbox(session.get_bind()), ids)
        return
    from ...aio.relay import send_after_commit as send_after_commit_async

    task = asyncio.get_running_loop().create_task(send_after_commit_async(AsyncSqlOutbox(engine), ids))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_IDS, None)
    session.info.pop(_ASYNC_ENGINE, None)


# -- the statements both stores run ------------------------------------------------------


def _claim(limit: int, ids: Sequence[int] | None) -> Select[Any]:
    """Pending rows in order of creation, locked, skipping those another relay holds (PostgreSQL)."""
    c = OUTBOX.c
    query = select(*(c[name] for name in STORED_COLUMNS))
    query = query.where(c.state == PENDING).order_by(c.id).limit(limit)
    if ids is not None:
        query = query.where(c.id.in_(list(ids)))
    return query.with_for_update(skip_locked=True)


def _record(updates: Sequence[RowUpdate], keep_sent: bool) -> list[Update | Delete]:
    c = OUTBOX.c
    writes = row_writes(updates, keep_sent)
    statements: list[Update | Delete] = []
    if writes.marked:
        marked = c.id.in_(writes.marked)
        statements.append(update(OUTBOX).where(marked).values(state=SENT, sent_at=datetime.now(UTC)))
    if writes.deleted:
        statements.append(delete(OUTBOX).where(c.id.in_(writes.deleted)))
    for u in writes.others:
        statements.append(update(OUTBOX).where(c.id == u.id).values(state=u.state, reason=u.reason))
    return statements


_STATUS = select(OUTBOX.c.state, func.count()).group_by(OUTBOX.c.state)


def _counts(rows: Sequence[Any]) -> RelayCounts:
    return RelayCounts.of({state: int(n) for state, n in rows})


def _failures(limit: int) -> Select[Any]:
    c = OUTBOX.c
    return select(*(c[name] for name in FAILED_COLUMNS)).where(c.state == FAILED).order_by(c.id).limit(limit)


def _prune(before: datetime) -> Delete:
    return delete(OUTBOX).where(OUTBOX.c.state == SENT, OUTBOX.c.sent_at < before)


def _stored(rows: Sequence[Any]) -> list[StoredRow]:
    return [StoredRow(*row) for row in rows]


class SqlOutbox:
    """The outbox table behind a SQLAlchemy ``Engine`` (or a database URL), for the sync relay."""

    def __init__(self, engine: Engine | Connection | str) -> None:
        self.engine: Engine = engine_of(engine)
        self._listener: Listener | None = None

    def relay_batch(self, limit: int, send: Any, *, ids: Sequence[int] | None = None, keep_sent: bool) -> int:
        with self.engine.begin() as conn:
            rows = _stored(conn.execute(_claim(limit, ids)).all())
            if rows:
                for statement in _record(send(rows), keep_sent):
                    conn.execute(statement)
        return len(rows)

    def wait(self, timeout: float) -> None:
        if self.engine.dialect.name != "postgresql":
            time.sleep(timeout)
            return
        if self._listener is None:
            import psycopg

            url = listen_url(self.engine.url.render_as_string(hide_password=False))
            self._listener = Listener(lambda: psycopg.connect(url))
        self._listener.wait(timeout)

    def status(self) -> RelayCounts:
        with self.engine.connect() as conn:
            return _counts(conn.execute(_STATUS).all())

    def failures(self, limit: int = STATUS_FAILURES) -> list[FailedRow]:
        with self.engine.connect() as conn:
            return [FailedRow(*row) for row in conn.execute(_failures(limit)).all()]

    def prune_sent(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(_prune(before)).rowcount)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


class AsyncSqlOutbox:
    """The outbox table behind a SQLAlchemy ``AsyncEngine`` (or a database URL), for the aio relay."""

    def __init__(self, engine: AsyncEngine | str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        from .engines import async_url

        self.engine = create_async_engine(async_url(engine)) if isinstance(engine, str) else engine
        self._listener: AsyncListener | None = None

    async def relay_batch(
        self, limit: int, send: Any, *, ids: Sequence[int] | None = None, keep_sent: bool
    ) -> int:
        async with self.engine.begin() as conn:
            rows = _stored((await conn.execute(_claim(limit, ids))).all())
            if rows:
                for statement in _record(await send(rows), keep_sent):
                    await conn.execute(statement)
        return len(rows)

    async def wait(self, timeout: float) -> None:
        if self.engine.dialect.name != "postgresql":
            await asyncio.sleep(timeout)
            return
        if self._listener is None:
            self._listener = AsyncListener(listen_url(self.engine.url.render_as_string(hide_password=False)))
        await self._listener.wait(timeout)

    async def status(self) -> RelayCounts:
        async with self.engine.connect() as conn:
            return _counts((await conn.execute(_STATUS)).all())

    async def failures(self, limit: int = STATUS_FAILURES) -> list[FailedRow]:
        async with self.engine.connect() as conn:
            return [FailedRow(*row) for row in (await conn.execute(_failures(limit))).all()]

    async def prune_sent(self, before: datetime) -> int:
        async with self.engine.begin() as conn:
            return int((await conn.execute(_prune(before))).rowcount)

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.close()
