"""End to end: one request id and one verified identity through HTTP, events and a Celery task.

- A: a Django view (this process, Django's test client) receives ``X-Request-ID: e2e-1``
  from a logged-in user, calls B over HTTP and starts a Celery task;
- B: an ASGI app under ``SvclinkMiddleware`` served by uvicorn on 127.0.0.1 (its own
  process) publishes an event on the local RabbitMQ; B's aio consumer handles it and
  calls C;
- the task runs in a real prefork Celery worker and calls C too;
- C (the test server here) checks every call with svclink's own incoming() in strict mode.

C must see e2e-1, a verified caller and the user every time; forged and expired caller
contexts must be refused by B and by C.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import requests

import svclink
from svclink.context import Claims, Incoming, incoming, sign
from svclink.core.context.incoming import rejection
from svclink.core.events.topology import ConsumerConfig, topology

from .. import celery_app
from ..django_project import setup
from ..events_support import RabbitView, eventually
from ..server import Recorded, Reply, TestServer
from ..services import CeleryWorker, Uvicorn, clean_env

setup()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

KEY = "e2e-shared-signing-key-0123456789"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
C_SETTINGS = svclink.Settings(service_name="c", signing_key=KEY, require_signed_context=True)


@attrs.define
class ServiceC:
    """The test server as service C: every request is judged by svclink's incoming(), strictly."""

    server: TestServer
    verdicts: list[tuple[str, Incoming]] = attrs.field(factory=list)
    settings: svclink.Settings = attrs.field(factory=lambda: C_SETTINGS)

    def judge(self, request: Recorded) -> Reply:
        result = incoming(request.headers, settings=self.settings, now=time.monotonic(), wall=time.time())
        self.verdicts.append((request.path, result))
        if result.rejected:
            status, headers, body = rejection(result)
            return Reply(status, body=body, headers=headers)
        return Reply(200, {"caller": result.caller.service, "user": result.caller.user_id})

    def seen(self, path: str, request_id: str) -> list[Incoming]:
        return [r for p, r in self.verdicts if p == path and r.context.request_id == request_id]


@pytest.fixture
def c() -> Iterator[ServiceC]:
    service = ServiceC(TestServer().start())
    for path in ("/from-consumer", "/from-task", "/direct"):
        service.server.route("GET", path, service.judge)
    yield service
    service.server.stop()


@pytest.fixture
def broker() -> Iterator[RabbitView]:
    view = RabbitView()
    yield view
    view.close()


def forged(request_id: str, audience: str) -> str:
    now = int(time.time())
    return sign(Claims("api", audience, request_id, now, now + 60, "1"), "an-attackers-key-0123456789")


def expired(request_id: str, audience: str) -> str:
    then = int(time.time()) - 3600
    return sign(Claims("api", audience, request_id, then, then + 60, "1"), KEY)


def test_one_request_id_and_a_verified_caller_everywhere(c: ServiceC, broker: RabbitView) -> None:
    run = uuid.uuid4().hex[:10]
    exchange, events_queue, tasks_queue = f"test.e2e.{run}", f"test.e2e.b.{run}", f"svclink-tests-e2e-{run}"
    b_env = clean_env(
        SVCLINK_SERVICE_NAME="b",
        SVCLINK_SERVICE_CONNECTIONS="c",
        SVCLINK_SERVICE_C_URL=c.server.url,
        SVCLINK_SIGNING_KEY=KEY,
        SVCLINK_AMQP_URL=AMQP,
        SVCLINK_TEST_QUEUE=events_queue,
        SVCLINK_TEST_EXCHANGE=exchange,
    )
    worker_env = clean_env(
        SVCLINK_SERVICE_NAME="api",
        SVCLINK_SERVICE_CONNECTIONS="c",
        SVCLINK_SERVICE_C_URL=c.server.url,
        SVCLINK_SIGNING_KEY=KEY,
        SVCLINK_AMQP_URL=AMQP,
    )
    b = worker = None
    topo = topology(ConsumerConfig(queue=events_queue, exchange=exchange, bindings=("order.*",)))
    try:
        b = Uvicorn("tests.asgi_app:app", b_env)
        worker = CeleryWorker("tests.celery_app", tasks_queue, worker_env)
        eventually(lambda: broker.consumers(events_queue) >= 1, timeout=15, what="B's event consumer")
        view_says = call_the_view(b.url, c.server.url, tasks_queue)

        # B verified the view's service and saw its request id and user
        assert view_says["verified"] is False  # the browser-facing request itself was unsigned
        assert view_says["b"]["verified"] and view_says["b"]["caller"] == "api"
        assert view_says["b"]["request_id"] == "e2e-1" and view_says["b"]["user_id"] == view_says["user_id"]

        # C was called by B's consumer and by the Celery task, each time as e2e-1 and verified
        from_consumer = eventually(lambda: c.seen("/from-consumer", "e2e-1"), what="the consumer's call to C")
        from_task = eventually(lambda: c.seen("/from-task", "e2e-1"), what="the task's call to C")
        for result, caller in ((from_consumer[0], "b"), (from_task[0], "api")):
            assert result.caller.verified, result.caller.reason
            assert result.caller.service == caller
            assert result.caller.user_id == view_says["user_id"]
        task = celery_app.app.AsyncResult(view_says["task_id"]).get(timeout=20)
        assert task["request_id"] == "e2e-1" and task["verified"] and task["pid"]

        # forged and expired caller contexts are refused by B and by C
        for make in (forged, expired):
            refused_b = requests.get(
                f"{b.url}/strict/echo",
                headers={"X-Request-ID": "e2e-bad", "X-Svclink-Context": make("e2e-bad", "b")},
                timeout=5,
            )
            assert refused_b.status_code == 401
            assert refused_b.json()["error_code"] == "svclink_unverified_caller"
            refused_c = requests.get(
                f"{c.server.url}/direct",
                headers={"X-Request-ID": "e2e-bad", "X-Svclink-Context": make("e2e-bad", "c")},
                timeout=5,
            )
            assert refused_c.status_code == 401
        assert [r.caller.reason for r in c.seen("/direct", "e2e-bad")] == ["bad signature", "expired"]
    finally:
        for process in (worker, b):
            if process is not None:
                process.stop()
        queues = [events_queue, tasks_queue, topo.dead_queue.name, *(q.name for q in topo.retry_queues)]
        broker.delete(queues, [exchange])


def call_the_view(b_url: str, c_url: str, tasks_queue: str) -> dict[str, Any]:
    """As a logged-in user, GET the Django view with X-Request-ID: e2e-1; its JSON answer."""
    user = User.objects.create_user(f"e2e-{uuid.uuid4().hex[:8]}")
    values = {
        "service_name": "api",
        "service_connections": ["b", "c"],
        "service_hosts": {"b": b_url, "c": c_url},
        "signing_key": KEY,
        "amqp_url": AMQP,
    }
    previous = celery_app.app.conf.task_default_queue
    celery_app.app.conf.task_default_queue = tasks_queue
    try:
        with override_settings(SVCLINK=values):
            client = Client()
            client.force_login(user)
            response = client.get("/e2e/", headers={"X-Request-ID": "e2e-1"})
    finally:
        celery_app.app.conf.task_default_queue = previous
    assert response.status_code == 200, response.content
    assert response.headers["X-Request-ID"] == "e2e-1"
    body: dict[str, Any] = response.json()
    assert body["request_id"] == "e2e-1" and body["user_id"] == str(user.pk)
    return body
