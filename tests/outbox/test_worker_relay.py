"""``svclink worker --relay URL``: the outbox relay runs in the worker beside its consumers, is
probed with them (ready only while it can do its work), and stops with them on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import svclink
from svclink.contrib.sqlalchemy import publish_on_commit

from ..cli.test_worker import ROOT, TARGET, Names, lines, probe, start_worker
from ..cli.test_worker import names as names  # the fixture: the worker test's queue and exchange
from ..events_support import RABBITMQ_URL, eventually
from ..outbox_support import create_database, drop_database, pg_url, query, scratch_database
from ..rabbit_node import free_port
from .shop_tables import metadata

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def database() -> Iterator[str]:
    with scratch_database() as name:
        engine = create_engine(pg_url(name, "+psycopg"))
        metadata.create_all(engine)
        engine.dispose()
        yield name


def test_the_worker_relays_the_outbox_beside_its_consumers(
    names: Names, database: str, tmp_path: Path
) -> None:
    assert start_worker(names, "sync", "--declare-only").wait(30) == 0  # as a deployment declares first
    svclink.configure(amqp_url=RABBITMQ_URL, service_name="worker-test", outbox_send_after_commit=False)
    engine = create_engine(pg_url(database, "+psycopg"))
    with Session(engine) as session, session.begin():
        for n in range(3):
            publish_on_commit(session, "work.item", {"n": n}, exchange=names.exchange)
    engine.dispose()
    port, log = free_port(), tmp_path / "handled"
    worker = start_worker(names, "sync", "--relay", pg_url(database), "--health-port", str(port), log=log)
    try:
        eventually(lambda: sorted(n for what, n, _ in lines(log) if what == "done") == [0, 1, 2], timeout=30)
        _, body = eventually(lambda: (r := probe(port, "/readyz"))[0] == 200 and r, timeout=10)
        assert body["consumers"]["outbox relay"] == "consuming"
        assert query(database, "SELECT count(*) FROM svclink_outbox") == [(0,)]
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out


def _publish_on_commit(database: str, exchange: str, count: int) -> None:
    svclink.configure(amqp_url=RABBITMQ_URL, service_name="worker-test", outbox_send_after_commit=False)
    engine = create_engine(pg_url(database, "+psycopg"))
    with Session(engine) as session, session.begin():
        for n in range(count):
            publish_on_commit(session, "work.item", {"n": n}, exchange=exchange)
    engine.dispose()


def _relay_state(port: int) -> tuple[int, str | None]:
    """``/readyz``'s status and the relay's state in its body."""
    status, body = probe(port, "/readyz")
    return status, (body or {}).get("consumers", {}).get("outbox relay")


def _stays(port: int, expected: tuple[int, str], seconds: float) -> None:
    """``/readyz`` answers ``expected`` (status, relay state) at every look for ``seconds``."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert _relay_state(port) == expected
        time.sleep(0.2)


def _stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out


#: the worker's broker when its relay's login is refused (its consumers keep the right one)
WRONG_PASSWORD = RABBITMQ_URL.replace("guest:guest@", "guest:wrong@")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"SVCLINK_AMQP_URL": WRONG_PASSWORD}, id="the broker refuses the login"),
        pytest.param({"relay": "postgresql://postgres@127.0.0.1:1/nowhere"}, id="no database"),
    ],
)
def test_a_relay_that_cannot_do_its_work_is_not_ready(
    names: Names, database: str, fault: dict[str, str]
) -> None:
    _publish_on_commit(database, names.exchange, 1)
    port, env = free_port(), {k: v for k, v in fault.items() if k != "relay"}
    relay = fault.get("relay", pg_url(database))
    worker = start_worker(
        names, "sync", "--relay", relay, "--health-port", str(port), WORKER_AMQP_URL=RABBITMQ_URL, **env
    )
    try:
        status, body = eventually(lambda: (r := probe(port, "/readyz"))[0] and r, timeout=20)
        assert status == 503 and body["ready"] is False, body
        eventually(lambda: _relay_state(port) == (503, "reconnecting"), timeout=10)
        assert body["consumers"][names.queue] in ("starting", "consuming")
        _stays(port, (503, "reconnecting"), 3.0)
        assert query(database, "SELECT state FROM svclink_outbox") == [("pending",)]
    finally:
        _stop(worker)


def test_a_relay_is_ready_once_it_reaches_the_broker_and_its_database(names: Names, tmp_path: Path) -> None:
    """Not ready while its database is missing; ready once it is there (with nothing to send
    yet), and then it sends what is written."""
    database, port, log = f"svclink_test_{uuid.uuid4().hex[:12]}", free_port(), tmp_path / "handled"
    assert start_worker(names, "sync", "--declare-only").wait(30) == 0
    worker = start_worker(names, "sync", "--relay", pg_url(database), "--health-port", str(port), log=log)
    try:
        eventually(lambda: _relay_state(port) == (503, "reconnecting"), timeout=20)
        create_database(database)
        engine = create_engine(pg_url(database, "+psycopg"))
        metadata.create_all(engine)
        engine.dispose()
        eventually(lambda: _relay_state(port) == (200, "consuming"), timeout=20)
        _publish_on_commit(database, names.exchange, 2)
        eventually(lambda: sorted(n for what, n, _ in lines(log) if what == "done") == [0, 1], timeout=30)
        assert _relay_state(port) == (200, "consuming")
    finally:
        _stop(worker)
        drop_database(database)


def test_the_django_worker_relays_the_projects_outbox(
    names: Names,
    django_pg: str,
    tmp_path: Path,
) -> None:
    from django.db import transaction

    from svclink.contrib.django import publish_on_commit

    assert start_worker(names, "sync", "--declare-only").wait(30) == 0
    svclink.configure(amqp_url=RABBITMQ_URL, service_name="worker-test", outbox_send_after_commit=False)
    query(django_pg, "DELETE FROM svclink_outbox")
    with transaction.atomic(using="pg"):
        for n in range(3):
            publish_on_commit("work.item", {"n": n}, exchange=names.exchange, using="pg")
    log = tmp_path / "handled"
    script = (
        "from tests.django_project import setup; setup(); from django.core.management import call_command; "
        f"call_command('svclink_worker', '{TARGET}', '--relay', 'pg')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    env.update(
        SVCLINK_AMQP_URL=RABBITMQ_URL, WORKER_SIDE="sync", WORKER_QUEUE=names.queue,
        WORKER_EXCHANGE=names.exchange, WORKER_LOG=str(log), SHOP_PG_DB=django_pg,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        eventually(lambda: sorted(n for what, n, _ in lines(log) if what == "done") == [0, 1, 2], timeout=30)
        assert query(django_pg, "SELECT count(*) FROM svclink_outbox") == [(0,)]
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
