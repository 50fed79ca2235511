"""The asyncio outbox relay: :mod:`svclink.sync.relay`, awaited, with the same decisions from
:mod:`svclink.core.events.outbox`; its store is :class:`svclink.contrib.sqlalchemy.AsyncSqlOutbox`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from ..core.errors import BrokerUnavailable, EventError
from ..core.events.outbox import (
    SEND_NOW_TIMEOUT,
    RelayCounts,
    RelayPace,
    RelayPolicy,
    RowUpdate,
    SendNowGate,
    StoredRow,
    batch,
    relay_policy,
)
from ..core.events.publishing import publish_deadline
from ..core.events.running import State
from ..core.settings import get_settings
from .publishing import Publisher, get_publisher

Send = Callable[[Sequence[StoredRow]], Awaitable[list[RowUpdate]]]


class OutboxStore(Protocol):
    """An outbox table the relay reads: Django's model or a SQLAlchemy table."""

    async def relay_batch(
        self, limit: int, send: Send, *, ids: Sequence[int] | None = None, keep_sent: bool
    ) -> int:
        """In one transaction: claim up to ``limit`` pending rows in order of creation (skipping rows
        another relay holds), ``send`` them, write the updates; answers how many were claimed."""
        ...

    async def wait(self, timeout: float) -> None:
        """Return when a row may have been added (a wake-up) or after ``timeout`` seconds."""
        ...

    async def status(self) -> RelayCounts: ...

    async def prune_sent(self, before: datetime) -> int: ...

    async def aclose(self) -> None: ...


class Relay:
    """Sends an outbox's pending rows: :meth:`run_once` until none is left, :meth:`run` until :meth:`stop`.

    Several relays may run on one table at once (PostgreSQL: each claims rows the others do
    not hold). A row is published at least once: a relay that dies after the confirm and
    before its commit leaves the row pending, and it is sent again with the same event id.
    """

    def __init__(
        self, store: OutboxStore, *, publisher: Publisher | None = None, policy: RelayPolicy | None = None
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.policy = policy or relay_policy(get_settings())
        self._stop = asyncio.Event()
        self._pace: RelayPace | None = None  # while run() runs

    @property
    def state(self) -> State:
        """What :meth:`run` is doing, for a readiness probe: see :class:`RelayPace`."""
        pace = self._pace
        return State.STOPPED if pace is None else pace.state

    async def send(self, rows: Sequence[StoredRow], timeout: float | None = None) -> list[RowUpdate]:
        """Publish ``rows`` pipelined, waiting once for their confirms (``timeout`` seconds, None for
        the ``publish_timeout`` setting); one update per row."""
        publisher = self.publisher or await get_publisher()
        claimed = batch(rows)
        sending = claimed.sending(publisher.settings, timeout, time.monotonic())
        try:
            await publisher._send(sending)
        except BrokerUnavailable as exc:
            return claimed.unsent(exc)
        return claimed.outcomes(sending.errors(), publisher.settings.unroutable)

    async def _batch(
        self, pace: RelayPace, ids: Sequence[int] | None = None, timeout: float | None = None
    ) -> tuple[float, list[RowUpdate]]:
        """One batch claimed, sent and recorded: the wait before the next, and the rows' updates."""
        updates: list[RowUpdate] = []

        async def send(rows: Sequence[StoredRow]) -> list[RowUpdate]:
            updates.extend(await self.send(rows, timeout))
            return updates

        claimed = await self.store.relay_batch(
            self.policy.batch_size, send, ids=ids, keep_sent=self.policy.keeps_sent
        )
        return pace.after(claimed, updates), updates

    async def run_once(self) -> RelayCounts:
        """Send what is pending now and return (for cron and tests); rows still pending stay."""
        pace, counts = RelayPace(self.policy), RelayCounts()
        while True:
            wait, updates = await self._batch(pace)
            counts = counts.add(updates)
            if wait:
                return counts

    async def send_now(self, ids: Sequence[int]) -> RelayCounts:
        """Send these rows right away if they are still pending (after their commit: best effort)."""
        _, updates = await self._batch(RelayPace(self.policy), ids, SEND_NOW_TIMEOUT)
        return RelayCounts().add(updates)

    async def _reach_broker(self) -> None:
        """Open the publisher's connection now if it has none (it is kept for the sends), so
        that a relay with nothing to send still finds out that it cannot reach the broker."""
        publisher = self.publisher or await get_publisher()
        if publisher._link() is None:
            await publisher._new_link(publish_deadline(publisher.settings, None, time.monotonic()))

    async def _step(self, pace: RelayPace) -> float:
        """One turn of :meth:`run`: the broker reached, a batch; the wait before the next."""
        try:
            await self._reach_broker()
        except EventError as exc:  # the broker down (BrokerUnavailable), or refusing the login
            return pace.unreachable(exc)
        try:
            wait = (await self._batch(pace))[0]
            if wait and (before := self.policy.prune_before(datetime.now(UTC))) is not None:
                await self.store.prune_sent(before)  # when idle; a failure here is the batch's
            return wait
        except Exception:
            return pace.crashed()

    async def run(self) -> None:
        """Relay until :meth:`stop`: a batch at a time, waiting for a wake-up when none is pending."""
        pace = self._pace = RelayPace(self.policy)
        try:
            while not self._stop.is_set():
                wait = await self._step(pace)
                if wait and not self._stop.is_set():
                    await self.store.wait(wait)
        finally:
            self._stop.clear()
            self._pace = None

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand (from a task or a signal handler on its loop)."""
        self._stop.set()


_gate = SendNowGate()


async def send_after_commit(store: OutboxStore, ids: Sequence[int]) -> None:
    """``publish_on_commit``'s send right after the commit: best effort, never raises (the relay
    sends what this does not); skipped for a while after one failed, and when the
    ``outbox_send_after_commit`` setting is off."""
    settings = get_settings()
    if not _gate.open(time.monotonic(), settings):
        return
    try:
        counts = await Relay(store).send_now(ids)
    except Exception as exc:
        _gate.raised(time.monotonic(), settings, exc)
    else:
        _gate.sent(time.monotonic(), settings, counts)
