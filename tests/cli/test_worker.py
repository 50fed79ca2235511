"""``svclink worker`` run as a user runs it: a subprocess on a consumer module, real RabbitMQ, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

import svclink
import svclink.sync

from ..events_support import RABBITMQ_URL, eventually
from ..rabbit_node import free_port

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests.cli.worker_consumers:consumer"
MODULE = "tests.cli.worker_consumers"  # a module alone: every consumer it defines


class Names:
    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.queue = f"test.worker.{suffix}"
        self.exchange = f"test.worker.{suffix}"


@pytest.fixture
def names() -> Iterator[Names]:
    n = Names()
    yield n
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    ch = connection.channel()
    for suffix in [s + d for s in ("", ".sync", ".aio") for d in ("", ".dead", ".retry.1000", ".retry.200")]:
        ch.queue_delete(n.queue + suffix)
    ch.exchange_delete(n.exchange)
    connection.close()


def start_worker(
    names: Names, side: str, *args: str, log: Path | None = None, **env: str
) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    extra = {
        "SVCLINK_AMQP_URL": RABBITMQ_URL,
        "SVCLINK_SERVICE_NAME": "worker-test",
        "WORKER_SIDE": side,
        "WORKER_QUEUE": names.queue,
        "WORKER_EXCHANGE": names.exchange,
        **({"WORKER_LOG": str(log)} if log else {}),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "svclink", "worker", TARGET if side != "both" else MODULE, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**clean, **extra},
    )


def probe(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, None


def count(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def lines(log: Path) -> list[tuple[str, int, int]]:
    if not log.exists():
        return []
    return [(w, int(n), int(a)) for w, n, a in (ln.split() for ln in log.read_text().splitlines())]


def publisher() -> svclink.sync.Publisher:
    return svclink.sync.Publisher(svclink.configure(amqp_url=RABBITMQ_URL, service_name="worker-test"))


@pytest.mark.parametrize(("side", "concurrency"), [("sync", 1), ("sync", 4), ("aio", 1), ("aio", 4)])
def test_sigterm_finishes_the_handlers_in_flight_and_leaves_the_rest_queued(
    names: Names, tmp_path: Path, side: str, concurrency: int
) -> None:
    log = tmp_path / "handled"
    port = free_port()
    proc = start_worker(
        names, side, "--health-port", str(port), "--health-host", "127.0.0.1", "--grace", "10",
        "--concurrency", str(concurrency), log=log, WORKER_SLEEP="0.5",
    )  # fmt: skip
    try:
        eventually(lambda: probe(port, "/readyz")[0] == 200, 20, "/readyz 200")
        assert probe(port, "/readyz") == (200, {"ready": True, "consumers": {names.queue: "consuming"}})
        assert probe(port, "/livez") == (200, {"live": True})
        pub = publisher()
        pub.publish_many([("work.item", {"n": n}) for n in range(20)], exchange=names.exchange)
        pub.close()
        # mid-way: some handled, one batch in flight
        eventually(lambda: sum(w == "done" for w, _, _ in lines(log)) >= concurrency, 10, "handled")
        eventually(lambda: len(lines(log)) % 2 == 1 or concurrency > 1, 5, "a handler in flight")
        in_flight = {n for w, n, _ in lines(log) if w == "start"} - {
            n for w, n, _ in lines(log) if w == "done"
        }
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() - stopped_at < 10  # within the grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in output
    handled = lines(log)
    starts = Counter(n for w, n, _ in handled if w == "start")
    done = Counter(n for w, n, _ in handled if w == "done")
    assert starts == done, f"a handler did not finish: {handled}"  # the in-flight ones completed
    assert in_flight <= set(done)
    assert max(starts.values()) == 1, f"handled twice: {handled}"
    assert all(a == 1 for _, _, a in handled)
    assert count(names.queue) == 20 - len(done)  # the finished ones acked, the rest back in the queue
    assert count(names.queue + ".dead") == 0
    assert len(done) < 20


def test_a_second_sigterm_exits_at_once_and_the_message_goes_back_unhandled(
    names: Names, tmp_path: Path
) -> None:
    log = tmp_path / "handled"
    port = free_port()
    proc = start_worker(
        names, "sync", "--grace", "30", "--health-port", str(port), "--health-host", "127.0.0.1",
        log=log, WORKER_SLEEP="20",
    )  # fmt: skip
    try:
        pub = publisher()
        eventually(lambda: probe(port, "/readyz")[0] == 200, 20, "/readyz 200")
        pub.publish("work.item", {"n": 1}, exchange=names.exchange)
        pub.close()
        eventually(lambda: lines(log), 10, "the handler started")
        proc.send_signal(signal.SIGTERM)
        eventually(
            lambda: probe(port, "/readyz") == (503, {"ready": False, "consumers": {names.queue: "draining"}})
        )
        assert probe(port, "/livez") == (200, {"live": True})  # draining is not dead: no restart
        assert proc.poll() is None  # the handler has 20 s to go, the grace is 30
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(8) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lines(log) == [("start", 1, 1)]
    eventually(lambda: count(names.queue) == 1, 5, "the message back in the queue")
    assert count(names.queue + ".dead") == 0


def _bound(names: Names) -> bool:
    """Whether the worker is consuming (so its queue is bound: it binds before it consumes)."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        return int(connection.channel().queue_declare(names.queue, passive=True).method.consumer_count) > 0
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def test_bad_targets_are_clear_errors() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    for target, message in (
        ("no_such_module_xyz:consumer", "cannot import 'no_such_module_xyz'"),
        ("json:dumps", "is a function, not an EventConsumer"),
        ("json", "defines no EventConsumer"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "svclink", "worker", target],
            capture_output=True, text=True, timeout=30, cwd=ROOT, env=clean,
        )  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def run_cli(names: Names, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    extra = {
        "SVCLINK_AMQP_URL": RABBITMQ_URL,
        "WORKER_SIDE": "sync",
        "WORKER_QUEUE": names.queue,
        "WORKER_EXCHANGE": names.exchange,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "svclink", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**clean, **extra},
    )  # fmt: skip


def test_declare_binds_the_queue_before_any_consumer_runs_and_is_idempotent(names: Names) -> None:
    for _ in range(2):
        result = run_cli(names, "declare", TARGET)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"ok: queue '{names.queue}' (durable)" in result.stdout
        assert f"ok: binding '{names.queue}' <- '{names.exchange}' 'work.#'" in result.stdout
    event = publisher().publish("work.item", {"n": 1}, exchange=names.exchange)  # routed: no error
    assert event.event_type == "work.item"
    assert count(names.queue) == 1


def test_declare_reports_drift_with_both_arguments_and_exits_1(names: Names) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    connection.channel().queue_declare(
        names.queue + ".retry.1000", durable=True, arguments={"x-message-ttl": 5}
    )
    connection.close()
    result = run_cli(names, "declare", TARGET)
    assert result.returncode == 1
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("drift:")]
    assert f"queue '{names.queue}.retry.1000'" in line and "x-message-ttl=1000" in line  # svclink's
    assert "inequivalent arg 'x-message-ttl'" in line and "current is '5'" in line  # the broker's
    assert f"ok: queue '{names.queue}.dead'" in result.stdout  # the rest is still declared
    assert "1 declarations drifted" in result.stdout
    worker = run_cli(names, "worker", TARGET, "--declare-only")
    assert worker.returncode == 1 and "drift:" in worker.stdout


def test_declare_takes_an_exchange_declared_not_durable_by_other_code_as_it_is(names: Names) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    connection.channel().exchange_declare(
        names.exchange, exchange_type="topic", durable=False
    )  # aio-pika's default
    connection.close()
    result = run_cli(names, "declare", TARGET)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"ok: exchange '{names.exchange}' (topic, durable): exists with another durability" in result.stdout
    )
    transient = run_cli(names, "declare", TARGET, SVCLINK_TRANSIENT_EXCHANGES=names.exchange)
    assert transient.returncode == 0, transient.stdout + transient.stderr
    assert f"ok: exchange '{names.exchange}' (topic)" in transient.stdout.splitlines()


@pytest.mark.parametrize("side", ["sync", "aio"])
def test_a_refused_login_ends_the_worker_with_a_clear_message(names: Names, side: str) -> None:
    result = run_cli(
        names, "worker", TARGET, WORKER_SIDE=side, SVCLINK_AMQP_URL="amqp://guest:wrong@127.0.0.1:5672/"
    )
    assert result.returncode == 1
    assert f"consumer {names.queue} failed: the broker refused the login (ACCESS_REFUSED)" in result.stderr
    assert "Traceback" not in result.stderr


def test_sync_and_aio_consumers_run_side_by_side_in_one_worker(names: Names, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    port = free_port()
    proc = start_worker(names, "both", "--health-port", str(port), "--health-host", "127.0.0.1", log=log)
    try:
        eventually(lambda: probe(port, "/readyz")[0] == 200, 20, "/readyz 200")
        queues = {names.queue + ".sync": "consuming", names.queue + ".aio": "consuming"}
        assert probe(port, "/readyz")[1]["consumers"] == queues
        pub = publisher()
        pub.publish("work.item", {"n": 7}, exchange=names.exchange)
        pub.close()
        eventually(lambda: [w for w, _, _ in lines(log)].count("done") == 2, 10, "handled by both")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_grace_running_out_exits_1_and_the_message_goes_back(names: Names, tmp_path: Path) -> None:
    log = tmp_path / "handled"
    proc = start_worker(names, "aio", "--grace", "1", log=log, WORKER_SLEEP="30")
    try:
        eventually(lambda: _bound(names), 20, "the worker's queue bound")
        pub = publisher()
        pub.publish("work.item", {"n": 1}, exchange=names.exchange)
        pub.close()
        eventually(lambda: lines(log), 10, "the handler started")
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 1
        assert time.monotonic() - stopped < 5  # the grace (1 s), not the handler's 30 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lines(log) == [("start", 1, 1)]
    eventually(lambda: count(names.queue) == 1, 5, "the message back in the queue")
    assert count(names.queue + ".dead") == 0
