"""The svclink command line, run as a user runs it: a subprocess with its exit code and output."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from ..events_support import eventually
from ..server import Reply, TestServer, closed_port


def svclink_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    return subprocess.run(
        [sys.executable, "-m", "svclink", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def test_demo_runs_and_tells_what_it_did() -> None:
    result = svclink_cli("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "user service listening on http://127.0.0.1:" in out
    assert "[sync] GET /api/v1/users/1" in out and "'name': 'ada'" in out
    assert "raised NotFound(status=404" in out
    assert "[aio ] 20 concurrent GETs" in out and "20 answers" in out
    assert "Events through memory://" in out
    assert "[sync] publish user.updated" in out and "[aio ] publish user.created" in out
    lines = out.splitlines()
    for side in ("sync", "aio "):  # both consumers got the event, with the publisher's request id
        assert any(f"[{side}] handled user.updated" in ln and "demo-request-2" in ln for ln in lines)
    assert any("handled user.created on attempt 2" in ln and "demo-request-3" in ln for ln in lines)
    assert "handler failed on attempt 1" in out
    assert (
        "dead-lettered" in out and ".notifications.dead (max-attempts: RuntimeError: no such mailbox)" in out
    )
    assert "Traceback" not in out + result.stderr


def test_call_prints_body_and_sends_query_headers_and_json(server: TestServer) -> None:
    server.route("POST", "/api/v1/users/", Reply(201, {"id": 7}))
    env = {"SVCLINK_SERVICE_CONNECTIONS": "user", "SVCLINK_SERVICE_USER_URL": server.url}
    result = svclink_cli(
        "call", "user", "POST", "/api/v1/users/", "-q", "a=1", "-q", "a=2", "-H", "X-Team: core",
        "--json", '{"name": "ada"}', env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": 7}
    (req,) = server.calls("POST", "/api/v1/users/")
    assert (
        req.query == {"a": ["1", "2"]} and req.headers["x-team"] == "core" and req.json() == {"name": "ada"}
    )


def test_call_error_prints_fields_and_exits_non_zero(server: TestServer) -> None:
    server.route(
        "GET", "/missing", Reply(404, {"message": "gone", "error_code": {"name": "GONE", "value": 1}})
    )
    result = svclink_cli("call", "user", "GET", "/missing", "--url", server.url)
    assert result.returncode == 1
    assert "NotFound" in result.stderr and '"error_code": "GONE"' in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_arguments_give_usage_errors_not_tracebacks() -> None:
    for args in (["call", "user", "GET"], ["call", "user", "GET", "/x", "-q", "novalue"], ["frobnicate"]):
        result = svclink_cli(*args)
        assert result.returncode == 2, args
        assert "usage: svclink" in result.stderr and "Traceback" not in result.stderr
    result = svclink_cli("call", "user", "GET", "//evil/x", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "endpoint must be a path" in result.stderr


def test_check_reports_unreachable_required_service_and_bad_settings(server: TestServer) -> None:
    env = {
        "SVCLINK_SERVICE_CONNECTIONS": "user,billing",
        "SVCLINK_REQUIRED_SERVICE_CONNECTIONS": "user,billing",
        "SVCLINK_SERVICE_USER_URL": server.url,
        "SVCLINK_SERVICE_BILLING_URL": f"http://127.0.0.1:{closed_port()}",
    }
    result = svclink_cli("check", env=env)
    assert result.returncode == 1
    assert "'billing'" in result.stdout and "not reachable" in result.stdout and "'user'" not in result.stdout
    result = svclink_cli("check", env={"SVCLINK_RESPONSE_TIMEOUT": "soon"})
    assert result.returncode == 1 and "response_timeout" in result.stderr


# -- events: publish, listen, and the broker line of check ----------------------------------

RABBITMQ = {"SVCLINK_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/", "SVCLINK_SERVICE_NAME": "cli-test"}


class Lines:
    """The lines a running process writes to one of its pipes, readable with a timeout."""

    def __init__(self, pipe: Any) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self._lines.put(line) for line in pipe], daemon=True).start()

    def next(self, timeout: float = 8.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s; so far: {self.seen}") from None
        self.seen.append(line)
        return line

    def until(self, text: str, timeout: float = 8.0) -> str:
        while True:
            line = self.next(timeout)
            if text in line:
                return line


@pytest.fixture
def exchange() -> Iterator[str]:
    """A fresh exchange name, deleted (with anything the test left) afterwards."""
    name = f"test.cli.{uuid.uuid4().hex[:10]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ["SVCLINK_AMQP_URL"]))
    connection.channel().exchange_delete(name)
    connection.close()


def start_listen(*args: str) -> tuple[subprocess.Popen[str], Lines, Lines]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "svclink", "listen", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **RABBITMQ},
    )
    return proc, Lines(proc.stdout), Lines(proc.stderr)


def queue_state(name: str) -> str:
    """``absent``, ``locked`` (exclusive to another connection) or ``present``, as the broker says."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ["SVCLINK_AMQP_URL"]))
    try:
        connection.channel().queue_declare(name, passive=True)
        return "present"
    except pika.exceptions.ChannelClosedByBroker as exc:
        return {404: "absent", 405: "locked"}[exc.reply_code]
    finally:
        if connection.is_open:
            connection.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_publish_then_listen_round_trip_on_rabbitmq(exchange: str, signum: int) -> None:
    proc, out, err = start_listen("cli.*", "other.#", "--exchange", exchange)
    try:
        queue_name = err.next().split("(queue ", 1)[1].split(",", 1)[0]
        err.until(": consuming")  # the queue is bound: events published from now on reach it
        published = svclink_cli("publish", "cli.hello", '{"n": 1, "name": "ada"}', "--exchange", exchange,
                                env=RABBITMQ)  # fmt: skip
        assert published.returncode == 0, published.stderr
        event_id = published.stdout.strip()
        line = json.loads(out.next())
        assert line["event_id"] == event_id and line["event_type"] == "cli.hello"
        assert line["source"] == "cli-test" and line["data"] == {"n": 1, "name": "ada"}
        assert line["request_id"] and line["request_id"] in published.stderr
        assert line["occurred_at"].endswith("Z") and line["format"] == "envelope"
        flat = svclink_cli("publish", "cli.flat", '{"n": 2}', "--exchange", exchange, "--format", "flat",
                           env=RABBITMQ)  # fmt: skip
        assert flat.returncode == 0, flat.stderr
        line = json.loads(out.next())
        assert (line["event_id"], line["format"], line["data"]) == (flat.stdout.strip(), "flat", {"n": 2})
        proc.send_signal(signum)
        assert proc.wait(8) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in "".join(err.seen) + proc.stderr.read()  # type: ignore[union-attr]
    for name in (queue_name, queue_name + ".dead"):
        eventually(lambda name=name: queue_state(name) == "absent", 5, f"{name} deleted")
    gone = svclink_cli("publish", "cli.hello", "{}", "--exchange", exchange, env=RABBITMQ)
    assert gone.returncode == 1 and "unroutable" in gone.stderr


def test_listen_leaves_nothing_behind_even_when_killed(exchange: str) -> None:
    proc, _, err = start_listen("cli.*", "--exchange", exchange)
    queue_name = err.next().split("(queue ", 1)[1].split(",", 1)[0]
    err.until(": consuming")
    assert queue_state(queue_name) == "locked"  # it exists, and no other connection may use it
    proc.kill()
    proc.wait(8)
    eventually(
        lambda: queue_state(queue_name) == "absent", 5, "the broker to drop the killed listener's queue"
    )
    result = svclink_cli("publish", "cli.hello", "{}", "--exchange", exchange, env=RABBITMQ)
    assert result.returncode == 1 and "unroutable" in result.stderr  # the exclusive queue went with it


def test_events_commands_refuse_the_in_process_broker() -> None:
    for args in (["publish", "user.updated", "{}"], ["listen", "user.*"]):
        result = svclink_cli(*args, env={"SVCLINK_AMQP_URL": "memory://"})
        assert result.returncode == 1, args
        assert "memory://" in result.stderr and "SVCLINK_AMQP_URL" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_events_commands_stop_at_once_on_a_refused_login() -> None:
    """A wrong password is a configuration error: listen does not retry it forever."""
    env = {"SVCLINK_AMQP_URL": "amqp://guest:wrong-password@127.0.0.1:5672/"}
    for args in (["publish", "user.updated", "{}"], ["listen", "user.*"]):
        result = svclink_cli(*args, env=env, timeout=30)
        assert result.returncode != 0, args
        assert "ACCESS_REFUSED" in result.stderr and "wrong-password" not in result.stderr
        assert "Traceback" not in result.stderr and "retrying" not in result.stderr


def test_events_commands_reject_bad_arguments_without_tracebacks() -> None:
    for args in (["publish", "user.updated", "{not json"], ["publish", "user.updated"], ["listen"]):
        result = svclink_cli(*args, env=RABBITMQ)
        assert result.returncode == 2, args
        assert "usage: svclink" in result.stderr and "Traceback" not in result.stderr
    for args, says in (
        (["publish", "user..updated", "{}"], "event type"),
        (["publish", "user.*", "{}"], "event type"),
        (["publish", "user.updated", "{}", "--exchange", "amq.bad"], "exchange"),
        (["listen", "user." + "x" * 300], "binding pattern"),
    ):
        result = svclink_cli(*args, env=RABBITMQ)
        assert result.returncode == 1, args
        assert result.stderr.startswith("svclink: error:") and says in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_check_reports_whether_the_broker_answers() -> None:
    result = svclink_cli("check", env=RABBITMQ)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broker: ok (amqp://127.0.0.1:5672/)" in result.stdout
    result = svclink_cli("check", env={"SVCLINK_AMQP_URL": "memory://"})
    assert result.returncode == 0 and "broker: memory://" in result.stdout and "in-process" in result.stdout
    port = closed_port()
    result = svclink_cli("check", env={"SVCLINK_AMQP_URL": f"amqp://guest:secret@127.0.0.1:{port}/"})
    assert result.returncode == 1
    assert f"problem: broker is not reachable: amqp://127.0.0.1:{port}/" in result.stdout
    assert "refused" in result.stdout and "secret" not in result.stdout + result.stderr
    result = svclink_cli("check", env={"SVCLINK_AMQP_URL": "amqp://guest:wrong@127.0.0.1:5672/"})
    assert result.returncode == 1 and "ACCESS_REFUSED" in result.stdout


def test_check_without_the_broker_for_a_service_that_sends_no_events() -> None:
    port = closed_port()
    result = svclink_cli("check", "--no-broker", env={"SVCLINK_AMQP_URL": f"amqp://127.0.0.1:{port}/"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broker: not checked (--no-broker)" in result.stdout and "problem" not in result.stdout


def test_the_console_script_finds_a_settings_module_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    (tmp_path / "proj" / "settings.py").write_text('SVCLINK = {"service_name": "projsvc"}\n')
    script = Path(sys.executable).parent / "svclink"  # the console script, not python -m
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_") and k != "PYTHONPATH"}
    result = subprocess.run(
        [str(script), "--settings", "proj.settings", "check", "--no-broker"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "settings: ok (service projsvc" in result.stdout


def test_call_fills_path_templates(server: TestServer) -> None:
    server.route("GET", "/api/v1/users/5", Reply(200, {"id": 5}))
    result = svclink_cli(
        "call", "user", "GET", "/api/v1/users/{id}", "--path-param", "id=5", "--url", server.url
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": 5}
    result = svclink_cli("call", "user", "GET", "/api/v1/users/{id}", "--url", server.url)
    assert result.returncode == 1 and "id" in result.stderr and "Traceback" not in result.stderr
