"""Celery: a task carries its sender's context into a real prefork worker on the local RabbitMQ.

The worker (tests/celery_app.py, 2 forked processes, a queue of its own for this run) is
service ``api`` like the process that sends the tasks; the tasks call service C (the
test server here) and publish events, and both must carry the sender's request id and
user, signed.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

import svclink
from svclink.context import bind, verify

from .. import celery_app
from ..conftest import Side
from ..server import Recorded, Reply, TestServer
from ..services import CeleryWorker, clean_env

KEY = "celery-test-signing-key-0123456789"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
RESULT_TIMEOUT = 20


@pytest.fixture(scope="module")
def c() -> Iterator[TestServer]:
    server = TestServer().start()
    server.route("GET", "/from-task", Reply(200, {"c": "ok"}))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(c: TestServer) -> Iterator[str]:
    """A prefork worker on a queue of its own; yields the queue name."""
    queue = f"svclink-tests-{uuid.uuid4().hex[:12]}"
    env = clean_env(
        SVCLINK_SERVICE_NAME="api",
        SVCLINK_SERVICE_CONNECTIONS="c",
        SVCLINK_SERVICE_C_URL=c.url,
        SVCLINK_SIGNING_KEY=KEY,
        SVCLINK_AMQP_URL=AMQP,
        SVCLINK_TEST_CELERY_QUEUE=queue,
    )
    process = CeleryWorker("tests.celery_app", queue, env)
    previous = celery_app.app.conf.task_default_queue
    celery_app.app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.app.conf.task_default_queue = previous
        process.stop()
        delete_queue(queue)


def delete_queue(queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


@pytest.fixture
def api(worker: str) -> str:
    """This process as service ``api``, sharing the worker's key."""
    svclink.configure(service_name="api", signing_key=KEY)
    return worker


def run(task: Any, *args: Any) -> dict[str, Any]:
    result: dict[str, Any] = task.delay(*args).get(timeout=RESULT_TIMEOUT)
    return result


def seen_by_c(c: TestServer, request_id: str) -> list[Recorded]:
    return [r for r in c.calls("GET", "/from-task") if r.headers.get("x-request-id") == request_id]


def test_a_task_calls_services_with_its_senders_context(side: Side, api: str, c: TestServer) -> None:
    rid = f"celery-{side.id}"
    with bind(request_id=rid, user_id="31", user_claims={"tier": "gold"}):
        report = run(celery_app.call_c, "/from-task", side.id)
    assert report["pid"] != os.getpid()
    assert (report["request_id"], report["user_id"], report["caller"]) == (rid, "31", "api")
    assert report["verified"] and report["body"] == {"c": "ok"}
    (req,) = seen_by_c(c, rid)
    claims = verify(req.headers["x-svclink-context"], keys=[KEY], audience="c", now=time.time())
    assert (claims.caller, claims.request_id, claims.user_id) == ("api", rid, "31")
    assert dict(claims.user_claims) == {"tier": "gold"}


def test_each_task_gets_its_own_context_and_it_does_not_leak(api: str, c: TestServer) -> None:
    results = []
    for i in range(6):
        with bind(request_id=f"many-{i}", user_id=str(i)):
            results.append(celery_app.call_c.delay("/from-task", "sync-requests"))
    reports = [r.get(timeout=RESULT_TIMEOUT) for r in results]
    assert [(r["request_id"], r["user_id"]) for r in reports] == [(f"many-{i}", str(i)) for i in range(6)]
    for i in range(6):
        assert len(seen_by_c(c, f"many-{i}")) == 1
    # sent outside any context: a fresh request id, nothing left over from the tasks before it
    bare = [celery_app.call_c.delay("/from-task", "sync-requests") for _ in range(4)]
    for report in (r.get(timeout=RESULT_TIMEOUT) for r in bare):
        assert not report["request_id"].startswith("many-") and report["user_id"] is None
        assert report["verified"]


def test_a_task_signed_with_another_key_is_not_trusted(side: Side, api: str, c: TestServer) -> None:
    svclink.configure(service_name="api", signing_key="not-the-workers-key-0123456789")
    rid = f"celery-forged-{side.id}"
    with bind(request_id=rid, user_id="root"):
        report = run(celery_app.call_c, "/from-task", side.id)
    assert not report["verified"] and report["reason"] == "bad signature"
    assert report["request_id"] == rid and report["user_id"] is None and report["caller"] is None
    (req,) = seen_by_c(c, rid)
    assert verify(req.headers["x-svclink-context"], keys=[KEY], audience="c", now=time.time()).user_id is None


def test_a_task_publishes_events_with_its_senders_context(side: Side, api: str) -> None:
    from svclink.context import EVENTS_AUDIENCE

    from ..events_support import RabbitView, eventually

    broker = RabbitView()
    exchange, queue = f"test.celery.{uuid.uuid4().hex[:10]}", f"test.celery.sink.{uuid.uuid4().hex[:10]}"
    try:
        broker.sink(queue, exchange, ["task.*"])
        rid = f"celery-event-{side.id}"
        with bind(request_id=rid, user_id="12"):
            report = run(celery_app.publish, exchange, "task.done", side.name)
        assert report["request_id"] == rid and report["pid"] != os.getpid()
        got = eventually(lambda: broker.get(queue), what="the event published by the task")
        headers = {k.lower(): v for k, v in got.headers.items()}
        assert headers["x-request-id"] == rid
        claims = verify(headers["x-svclink-context"], keys=[KEY], audience=EVENTS_AUDIENCE, now=time.time())
        assert (claims.caller, claims.request_id, claims.user_id) == ("api", rid, "12")
    finally:
        broker.delete([queue], [exchange])
        broker.close()


@pytest.mark.parametrize("how", ["apply", "run", "always_eager"])
def test_a_task_run_in_the_callers_process_sees_request_svclink(how: str, c: TestServer) -> None:
    svclink.configure(
        service_name="api", signing_key=KEY, service_connections=["c"], service_hosts={"c": c.url}
    )
    rid = f"local-{how}"
    with bind(request_id=rid, user_id="7", user_claims={"tier": "gold"}):
        if how == "apply":
            report = celery_app.call_c.apply(("/from-task", "sync-requests")).get()
        elif how == "run":
            report = celery_app.call_c.run("/from-task", "sync-requests")
        else:
            celery_app.app.conf.task_always_eager = True
            try:
                report = celery_app.call_c.delay("/from-task", "sync-requests").get()
            finally:
                celery_app.app.conf.task_always_eager = False
    assert report["pid"] == os.getpid()
    assert report["verified"] and report["reason"] is None
    assert (report["request_id"], report["user_id"]) == (rid, "7")
    assert report["body"] == {"c": "ok"} and len(seen_by_c(c, rid)) == 1
