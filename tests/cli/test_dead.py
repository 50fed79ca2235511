"""``svclink dead list|show|replay|purge`` as a user runs it, against RabbitMQ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pika
import pytest

import svclink
import svclink.sync

from ..events_support import RABBITMQ_URL, eventually


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    return subprocess.run(
        [sys.executable, "-m", "svclink", "dead", *args],
        capture_output=True, text=True, timeout=60, input=stdin,
        env={**clean, "SVCLINK_AMQP_URL": RABBITMQ_URL},
    )  # fmt: skip


@pytest.fixture
def dead_letters() -> Iterator[tuple[str, str, list[str]]]:
    """A queue with two dead letters (its handler always failed); its name, exchange and the event ids."""
    name = f"test.dead.{uuid.uuid4().hex[:10]}"
    settings = svclink.configure(amqp_url=RABBITMQ_URL, service_name="dead-test")
    consumer = svclink.sync.EventConsumer(name, exchange=name, max_attempts=1, settings=settings)

    @consumer.on("order.*")
    def fail(event: svclink.sync.Event) -> None:
        raise ValueError(f"no stock for {event.data['n']}")

    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    eventually(lambda: consumer.consuming, what="consuming")
    publisher = svclink.sync.Publisher(settings)
    ids = [publisher.publish("order.paid", {"n": n}, exchange=name).event_id for n in range(2)]
    publisher.close()
    admin = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    ch = admin.channel()
    eventually(lambda: ch.queue_declare(name + ".dead", passive=True).method.message_count == 2, what="dead")
    consumer.stop()
    thread.join(10)
    yield name, name, ids
    for queue in (name, name + ".dead"):
        ch.queue_delete(queue)
    ch.exchange_delete(name)
    admin.close()


def test_list_show_replay_purge_round_trip(dead_letters: tuple[str, str, list[str]]) -> None:
    queue, exchange, ids = dead_letters
    listed = cli("list", queue)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ids
    assert rows[0][1:4] == ["order.paid", "max-attempts", "1"] and rows[0][5] == "ValueError: no stock for 0"
    shown = cli("show", queue, ids[1])
    assert shown.returncode == 0 and '"x-svclink-error": "ValueError: no stock for 1"' in shown.stdout
    assert '"n": 1' in shown.stdout
    assert cli("show", queue, "nope").returncode == 1

    replayed = cli("replay", queue, "--event-id", ids[0])
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {ids[0]} to exchange {exchange!r}, routing key 'order.paid'" in replayed.stdout
    admin = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    method, props, body = admin.channel().basic_get(queue, auto_ack=True)
    admin.close()
    assert method is not None and json.loads(body)["event_id"] == ids[0]
    assert "x-svclink-attempt" not in (props.headers or {})  # a first attempt again
    assert [r.split("\t")[0] for r in cli("list", queue).stdout.splitlines()[1:]] == [ids[1]]

    assert cli("replay", queue).returncode == 2  # --event-id or --all: a usage error
    declined = cli("purge", queue, stdin="n\n")
    assert declined.returncode == 1 and "delete all 1 dead letters" in declined.stdout
    purged = cli("purge", queue, "--yes")
    assert purged.returncode == 0 and f"1 deleted from {queue}.dead" in purged.stdout
    assert cli("list", queue).stdout.splitlines()[1:] == []
    missing = cli("list", "no.such.queue")
    assert missing.returncode == 1 and "no dead-letter queue 'no.such.queue.dead'" in missing.stderr
    assert "Traceback" not in missing.stderr
