"""``manage.py svclink_worker`` on the test project with PostgreSQL: discovery, the ORM, a killed
connection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

import svclink
import svclink.sync

from ..cli.test_worker import probe
from ..events_support import RABBITMQ_URL, eventually
from ..outbox_support import query, scratch_database
from ..rabbit_node import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    with scratch_database("svclink_worker") as db:
        env = {
            "WORKER_PG_DB": db,
            "WORKER_QUEUE": f"test.django.{suffix}",
            "WORKER_EXCHANGE": f"test.django.{suffix}",
            "WORKER_AMQP_URL": RABBITMQ_URL,
        }
        yield env
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        ch = connection.channel()
        for queue in (env["WORKER_QUEUE"], env["WORKER_QUEUE"] + ".dead", env["WORKER_QUEUE"] + ".retry.200"):
            ch.queue_delete(queue)
        ch.exchange_delete(env["WORKER_EXCHANGE"])
        connection.close()


def manage(env: dict[str, str], *args: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``manage.py ARGS`` for the worker's settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SVCLINK_", "DJANGO_"))}
    command = [sys.executable, "-m", "django", *args, "--settings", "tests.django_project.worker_settings"]
    return command, {**clean, **env}


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command, environ = manage(env, *args)
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def test_the_worker_finds_the_apps_consumers_and_survives_a_killed_database_connection(
    names: dict[str, str],
) -> None:
    migrated = run_manage(names, "migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    command, environ = manage(
        names, "svclink_worker", "--health-port", str(port), "--health-host", "127.0.0.1"
    )
    proc = subprocess.Popen(
        command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    db = names["WORKER_PG_DB"]
    try:
        eventually(lambda: probe(port, "/readyz")[0] == 200, 30, "the worker ready")
        assert probe(port, "/readyz")[1]["consumers"] == {
            names["WORKER_QUEUE"]: "consuming"
        }  # found, not named
        publisher = svclink.sync.Publisher(
            svclink.configure(amqp_url=RABBITMQ_URL, service_name="django-test")
        )
        publisher.publish("order.paid", {"n": 1}, exchange=names["WORKER_EXCHANGE"])
        eventually(lambda: query(db, "SELECT number FROM parcels_parcel") == [(1,)], what="the first parcel")
        ((first_pid,),) = query(db, "SELECT backend_pid FROM parcels_parcel WHERE number = 1")
        assert query(db, f"SELECT pg_terminate_backend({first_pid})") == [(True,)]  # the worker's connection
        publisher.publish("order.paid", {"n": 2}, exchange=names["WORKER_EXCHANGE"])
        eventually(lambda: len(query(db, "SELECT * FROM parcels_parcel")) == 2, what="the second parcel")
        ((attempt, pid),) = query(db, "SELECT attempt, backend_pid FROM parcels_parcel WHERE number = 2")
        assert attempt == 1  # handled at once on a new connection, not after a failure
        assert pid != first_pid
        publisher.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output, output
