"""The SQLAlchemy outbox, with a Session (sync) and an AsyncSession (aio), on real PostgreSQL and
RabbitMQ: published if, and only if, the transaction commits; the relay sends the rest; a row the
broker refuses for good is marked failed with the reason and listed by ``svclink relay --status``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import svclink
import svclink.aio.relay
import svclink.sync.relay
from svclink.cli import main
from svclink.context import bind
from svclink.contrib.sqlalchemy import AsyncSqlOutbox, SqlOutbox, publish_on_commit

from ..conftest import Side
from ..events_support import RABBITMQ_URL, RabbitView, eventually
from ..outbox_support import pg_url, query
from ..server import closed_port
from .shop_tables import orders

pytestmark = pytest.mark.rabbitmq


class Refused(Exception):
    """The application's own failure, after publish_on_commit: the transaction rolls back."""


@pytest.fixture(params=["sync-requests", "aio-httpx"], ids=["sync", "aio"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    """The outbox's two sides (the HTTP transport plays no part here)."""
    s = Side(request.param)
    yield s
    s.close()


#: order numbers of a test of their own (the database is shared by the module's tests)
_bases = itertools.count(1)


@pytest.fixture
def database(sql_database: str) -> str:
    return sql_database


@pytest.fixture
def sink(database: str) -> Iterator[tuple[RabbitView, str, str]]:
    view = RabbitView()
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"test.outbox.{tag}", f"test.outbox.{tag}.sink"
    view.sink(queue, exchange, ["order.*"])
    yield view, exchange, queue
    view.delete([queue], [exchange])
    query(database, "DELETE FROM svclink_outbox")


def drain(view: RabbitView, queue: str) -> list[dict[str, Any]]:
    got = []
    while (message := view.get(queue)) is not None:
        got.append(json.loads(message.body))
    return got


def write_orders(side: Side, database: str, exchange: str, plan: list[tuple[int, bool]]) -> list[str]:
    """Each ``(number, commit)``: an order and its event in one transaction, committed or rolled back.

    Returns the event ids of the committed ones. On the aio side the loop runs on until the
    sends after commit have finished, as an application's loop would.
    """
    url = pg_url(database, "+psycopg")
    if side.runner is None:
        engine = create_engine(url)
        committed = []
        for number, commit in plan:
            try:
                with Session(engine) as session, session.begin():
                    session.execute(insert(orders).values(number=number))
                    event = publish_on_commit(session, "order.created", {"number": number}, exchange=exchange)
                    if not commit:
                        raise Refused
                committed.append(event.event_id)
            except Refused:
                pass
        engine.dispose()
        return committed

    async def go() -> list[str]:
        engine = create_async_engine(url)
        committed = []
        for number, commit in plan:
            try:
                async with AsyncSession(engine) as session, session.begin():
                    await session.execute(insert(orders).values(number=number))
                    event = await publish_on_commit(
                        session, "order.created", {"number": number}, exchange=exchange
                    )
                    if not commit:
                        raise Refused
                committed.append(event.event_id)
            except Refused:
                pass
        while svclink.contrib.sqlalchemy.outbox._sending:
            await asyncio.sleep(0.01)
        await engine.dispose()
        return committed

    return side.runner.run(go())


def relay_once(side: Side, database: str) -> svclink.sync.relay.RelayCounts:
    url = pg_url(database)
    if side.runner is None:
        store = SqlOutbox(url)
        try:
            return svclink.sync.relay.Relay(store).run_once()
        finally:
            store.close()

    async def go() -> svclink.sync.relay.RelayCounts:
        store = AsyncSqlOutbox(url)
        try:
            return await svclink.aio.relay.Relay(store).run_once()
        finally:
            await store.aclose()
            await store.engine.dispose()

    return side.runner.run(go())


def test_a_rolled_back_transaction_publishes_nothing(
    side: Side, database: str, sink: tuple[RabbitView, str, str]
) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL)
    base = next(_bases) * 100
    committed = write_orders(
        side, database, exchange, [(base + 1, False), (base + 2, True), (base + 3, False)]
    )
    got = eventually(lambda: drain(view, queue), what="the committed event")
    assert [g["event_id"] for g in got] == committed
    assert [g["data"] for g in got] == [{"number": base + 2}]
    assert relay_once(side, database).sent == 0
    assert drain(view, queue) == []
    assert query(database, f"SELECT count(*) FROM orders WHERE number > {base}") == [(1,)]
    assert query(database, "SELECT count(*) FROM svclink_outbox") == [(0,)]


def test_the_relay_sends_what_the_send_after_commit_could_not(
    side: Side, database: str, sink: tuple[RabbitView, str, str]
) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=f"amqp://guest:guest@127.0.0.1:{closed_port()}/")
    base = next(_bases) * 100
    with bind(request_id="req-sqlalchemy-1"):
        committed = write_orders(side, database, exchange, [(base + n, n != 2) for n in range(5)])
    assert query(database, "SELECT count(*) FROM svclink_outbox WHERE state = 'pending'") == [(4,)]
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL)
    counts = relay_once(side, database)
    assert (counts.sent, counts.failed, counts.pending) == (4, 0, 0)
    got = eventually(lambda: drain(view, queue), what="the relayed events")
    assert [g["event_id"] for g in got] == committed  # in order of creation
    assert {g["context"]["request_id"] for g in got} == {"req-sqlalchemy-1"}  # captured at the call


def test_an_unroutable_row_under_raise_is_failed_with_its_reason_and_listed_by_status(
    database: str,
    sink: tuple[RabbitView, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=f"amqp://guest:guest@127.0.0.1:{closed_port()}/")
    engine = create_engine(pg_url(database, "+psycopg"))
    with Session(engine) as session, session.begin():
        routed = publish_on_commit(session, "order.created", {"n": 1}, exchange=exchange)
        lost = publish_on_commit(session, "invoice.created", {"n": 2}, exchange=exchange)  # no queue bound
    engine.dispose()
    monkeypatch.setenv("SVCLINK_AMQP_URL", RABBITMQ_URL)  # the command reads the environment's settings
    monkeypatch.setenv("SVCLINK_UNROUTABLE", "raise")
    url = pg_url(database)
    assert main(["relay", "--database-url", url, "--once"]) == 0
    assert "sent 1, failed 1, pending 0" in capsys.readouterr().out
    assert [g["event_id"] for g in eventually(lambda: drain(view, queue))] == [routed.event_id]
    assert main(["relay", "--database-url", url, "--once"]) == 0  # never retried hot
    assert "sent 0, failed 0, pending 0" in capsys.readouterr().out
    assert main(["relay", "--database-url", url, "--status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[:3] == ["pending 0", "sent 0", "failed 1"]
    assert status[3].startswith("failed row ") and f"invoice.created {lost.event_id}: " in status[3]
    assert "unroutable" in status[3]
    rows = query(database, "SELECT state, reason FROM svclink_outbox")
    assert len(rows) == 1 and rows[0][0] == "failed" and "unroutable" in str(rows[0][1])


def test_with_the_send_after_commit_off_only_the_relay_sends(
    side: Side, database: str, sink: tuple[RabbitView, str, str]
) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL, outbox_send_after_commit=False)
    base = next(_bases) * 100
    committed = write_orders(side, database, exchange, [(base, True), (base + 1, True)])
    assert view.get(queue) is None
    assert query(database, "SELECT count(*) FROM svclink_outbox WHERE state = 'pending'") == [(2,)]
    assert relay_once(side, database).sent == 2
    assert [g["event_id"] for g in eventually(lambda: drain(view, queue))] == committed


def test_an_unroutable_row_under_warn_is_sent_with_a_warning_as_publish_does(
    database: str, sink: tuple[RabbitView, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    exchange = sink[1]
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL, outbox_send_after_commit=False)
    engine = create_engine(pg_url(database, "+psycopg"))
    with Session(engine) as session, session.begin():
        lost = publish_on_commit(session, "invoice.created", {"n": 1}, exchange=exchange)  # no queue bound
    engine.dispose()
    store = SqlOutbox(pg_url(database))
    counts = svclink.sync.relay.Relay(store).run_once()
    store.close()
    assert (counts.sent, counts.failed, counts.pending) == (1, 0, 0)
    assert query(database, "SELECT count(*) FROM svclink_outbox") == [(0,)]
    assert any(lost.event_id in r.getMessage() and "unroutable" in r.getMessage() for r in caplog.records)


def test_format_flat_goes_through_the_outbox_as_publish_writes_it(
    side: Side, database: str, sink: tuple[RabbitView, str, str]
) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL, outbox_send_after_commit=False)
    url = pg_url(database, "+psycopg")
    if side.runner is None:
        engine = create_engine(url)
        with Session(engine) as session, session.begin():
            event = publish_on_commit(session, "order.created", {"n": 7}, exchange=exchange, format="flat")
        engine.dispose()
    else:

        async def go() -> Any:
            engine = create_async_engine(url)
            async with AsyncSession(engine) as session, session.begin():
                made = await publish_on_commit(
                    session, "order.created", {"n": 7}, exchange=exchange, format="flat"
                )
            await engine.dispose()
            return made

        event = side.runner.run(go())
    engine = create_engine(url)
    with pytest.raises(svclink.InvalidEvent, match="format='flat'"), Session(engine) as session:
        publish_on_commit(
            session, "order.created", [1], exchange=exchange, format="flat"
        )  # checked at the call
    engine.dispose()
    assert relay_once(side, database).sent == 1
    (got,) = eventually(lambda: drain(view, queue))
    assert got == {"event_type": "order.created", "event_id": event.event_id, "n": 7,
                   "timestamp": got["timestamp"], "service": "shop"}  # fmt: skip


def test_several_relays_at_once_send_each_row_once(database: str, sink: tuple[RabbitView, str, str]) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL, outbox_send_after_commit=False)
    engine = create_engine(pg_url(database, "+psycopg"))
    with Session(engine) as session, session.begin():
        written = [
            publish_on_commit(session, "order.created", {"n": n}, exchange=exchange) for n in range(600)
        ]
    engine.dispose()
    stores = [SqlOutbox(pg_url(database)) for _ in range(3)]
    policy = svclink.sync.relay.RelayPolicy(batch_size=50)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # each claims rows the others do not hold
        counts = list(
            pool.map(lambda store: svclink.sync.relay.Relay(store, policy=policy).run_once(), stores)
        )
    for store in stores:
        store.close()
    assert sum(c.sent for c in counts) == 600 and all(c.sent > 0 for c in counts)
    got = eventually(lambda: (messages := drain_all(view, queue, 600)) and messages)
    assert sorted(g["event_id"] for g in got) == sorted(e.event_id for e in written)  # each once


def drain_all(view: RabbitView, queue: str, expected: int) -> list[dict[str, Any]]:
    """The messages of ``queue`` once ``expected`` have arrived (more would show as duplicates)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        got += drain(view, queue)
    time.sleep(0.2)
    return got + drain(view, queue)


def test_with_a_retention_sent_rows_are_kept_marked_then_pruned(
    side: Side, database: str, sink: tuple[RabbitView, str, str]
) -> None:
    view, exchange, queue = sink
    svclink.configure(
        service_name="shop", amqp_url=RABBITMQ_URL, outbox_send_after_commit=False, outbox_retention=3600
    )
    base = next(_bases) * 100
    committed = write_orders(side, database, exchange, [(base, True), (base + 1, True)])
    assert relay_once(side, database).sent == 2
    assert [g["event_id"] for g in eventually(lambda: drain(view, queue))] == committed
    rows = query(database, "SELECT state, sent_at IS NOT NULL FROM svclink_outbox ORDER BY id")
    assert rows == [("sent", True), ("sent", True)]
    assert relay_once(side, database).sent == 0  # a sent row is not sent again
    store = SqlOutbox(pg_url(database))
    assert store.prune_sent(datetime.now(UTC) - timedelta(hours=1)) == 0  # younger than the retention
    assert store.prune_sent(datetime.now(UTC) + timedelta(seconds=1)) == 2
    store.close()
    assert query(database, "SELECT count(*) FROM svclink_outbox") == [(0,)]


@pytest.fixture
def no_delete_role(database: str) -> Iterator[str]:
    """A login role that may read, add and mark outbox rows but not delete them: pruning
    fails for real (permission denied) while every batch still works."""
    role = f"svclink_noprune_{uuid.uuid4().hex[:8]}"
    query(database, f"CREATE ROLE {role} LOGIN")
    query(database, f"GRANT SELECT, INSERT, UPDATE ON svclink_outbox TO {role}")
    query(database, f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    yield f"postgresql://{role}@127.0.0.1:5432/{database}"
    query(database, f"DROP OWNED BY {role}")
    query(database, f"DROP ROLE {role}")


def test_a_relay_whose_pruning_fails_goes_on_relaying(
    side: Side, database: str, sink: tuple[RabbitView, str, str], no_delete_role: str
) -> None:
    """Pruning runs when the relay is idle; a database that refuses it is one failed turn
    (logged, retried later), not the end of the relay."""
    view, exchange, queue = sink
    svclink.configure(
        service_name="shop", amqp_url=RABBITMQ_URL, outbox_send_after_commit=False, outbox_retention=1
    )
    base = next(_bases) * 100
    writer = Side("sync-requests")  # the orders are written the same way for both relays
    first = write_orders(writer, database, exchange, [(base, True)])
    policy = svclink.sync.relay.RelayPolicy(poll_interval=0.2, retention=1.0)
    if side.runner is None:
        store = SqlOutbox(no_delete_role)
        relay = svclink.sync.relay.Relay(store, policy=policy)
        runner = concurrent.futures.ThreadPoolExecutor(1).submit(relay.run)
        assert [g["event_id"] for g in eventually(lambda: drain(view, queue))] == first
        time.sleep(1.5)  # idle turns: each prunes, and is refused
        later = write_orders(writer, database, exchange, [(base + 1, True)])
        assert [g["event_id"] for g in eventually(lambda: drain(view, queue))] == later
        assert not runner.done()
        relay.stop()
        runner.result(10)
        store.close()
        return

    async def go() -> None:
        store = AsyncSqlOutbox(no_delete_role)
        relay = svclink.aio.relay.Relay(store, policy=policy)
        task = asyncio.create_task(relay.run())
        await asyncio.to_thread(lambda: eventually(lambda: drain(view, queue)))
        await asyncio.sleep(1.5)
        later = await asyncio.to_thread(write_orders, writer, database, exchange, [(base + 1, True)])
        got = await asyncio.to_thread(lambda: eventually(lambda: drain(view, queue)))
        assert [g["event_id"] for g in got] == later
        assert not task.done()
        relay.stop()
        await asyncio.wait_for(task, 10)
        await store.aclose()

    assert side.runner is not None
    side.runner.run(go())
