"""Every log line of a failed call and a dead-lettered event says what to act on, as JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import svclink
import svclink.logs
from svclink.context import bind

from ..conftest import Side, use_server
from ..events_support import EventEnv, Recorder, env_fixture, eventually
from ..server import Reply, TestServer

env = env_fixture()


@pytest.fixture
def json_lines() -> Iterator[list[dict[str, Any]]]:
    """What ``svclink.logs.json_logging()`` writes, one dict per line."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = svclink.logs.json_logging(logging.INFO, stream)
    lines: list[dict[str, Any]] = []

    class Lines(list[dict[str, Any]]):
        def __iter__(self) -> Any:
            return iter([json.loads(line) for line in stream.getvalue().splitlines()])

    yield Lines()  # type: ignore[misc]
    root.removeHandler(handler)
    root.setLevel(level)
    del lines


def test_a_retried_call_logs_json_with_its_request_id_and_service(
    side: Side, server: TestServer, json_lines: list[dict[str, Any]]
) -> None:
    use_server(server, retry=svclink.RetryPolicy(total=1, backoff_factor=0.01))
    server.route("GET", "/flaky", Reply(503), Reply(200, {}))
    with bind(request_id="req-logs-1"):
        side.call("user", "GET", "/flaky")
    (retry,) = [line for line in json_lines if "retrying" in line["message"]]
    assert retry["request_id"] == "req-logs-1" and retry["service"] == "api"
    assert retry["logger"].startswith("svclink") and retry["level"] == "INFO"
    assert "GET" in retry["message"] and "user" in retry["message"] and "503" in retry["message"]


def test_a_dead_lettered_event_logs_its_id_type_queue_and_reason(
    env: EventEnv, json_lines: list[dict[str, Any]]
) -> None:
    queue = env.queue()

    def log_inside(event: Any) -> None:
        logging.getLogger("shop.handlers").warning("cannot ship order %s", event.data["order"])

    env.consume(queue, {"order.paid": Recorder(always_fail=True, then=log_inside)}, bindings=["order.*"],
                max_attempts=1)  # fmt: skip
    with bind(request_id="req-logs-2"):
        sent = env.publish("order.paid", {"order": 9})
    eventually(lambda: any("dead-lettered" in line["message"] for line in json_lines), what="the log line")
    (dead,) = [line for line in json_lines if "dead-lettered" in line["message"]]
    assert dead["level"] == "ERROR" and sent.event_id in dead["message"] and queue in dead["message"]
    assert "max-attempts" in dead["message"] and "handler failure" in dead["message"]
    assert dead["request_id"] == "req-logs-2"
    # a line the handler itself logs carries the event it was handling
    (inside,) = [line for line in json_lines if line["logger"] == "shop.handlers"]
    assert (inside["event_id"], inside["event_type"]) == (sent.event_id, "order.paid")
    assert inside["request_id"] == "req-logs-2"
