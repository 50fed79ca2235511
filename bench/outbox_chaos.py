"""The outbox and inbox under faults: no event lost, none acted on twice, none for a rolled-back order.

A shop writes orders, each in a transaction with ``publish_on_commit("order.created")``, every
tenth rolled back on purpose; a relay sends the outbox; a shipping consumer with an inbox
writes one shipment per order. Meanwhile the broker (a private RabbitMQ node) is stopped for
5 s, the relay is killed with SIGKILL twice and restarted, and the consumer is killed with
SIGKILL twice while a handler runs and restarted. At the end the counts must agree:
committed orders = shipments = distinct events handled, no duplicate shipment, no shipment
for a rolled-back order, nothing left pending in the outbox.

``python -m bench.outbox_chaos [--orders 1000] [--kind django|sqlalchemy|both]`` prints the
counts; tests/outbox/test_chaos.py runs it smaller. KIND ``django``: Django ORM, the Django
relay command and a sync consumer with the Django inbox; ``sqlalchemy``: AsyncSession, the
aio relay and an aio consumer with the SQLAlchemy inbox. Needs PostgreSQL on 127.0.0.1:5432
and ``rabbitmq-server`` installed (the shared broker is not touched).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import attrs
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: how long the broker stays stopped
BROKER_DOWN = 5.0
#: the longest the run waits for the shipments to catch up after the last fault
SETTLE_TIMEOUT = 120.0


@attrs.frozen
class ChaosCounts:
    """What a chaos run ended with (the first three must be equal, the rest zero)."""

    kind: str
    orders_committed: int
    shipments: int
    events_handled: int
    orders_rolled_back: int
    duplicate_shipments: int
    shipments_for_rolled_back: int
    outbox_pending: int
    outbox_failed: int
    relay_kills: int
    consumer_kills_mid_handler: int
    broker_down_seconds: float
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.orders_committed == self.shipments == self.events_handled
            and self.duplicate_shipments == self.shipments_for_rolled_back == 0
            and self.outbox_pending == self.outbox_failed == 0
        )


class Child:
    """One process of the shop (``tests/outbox/chaos_apps.py``), restartable, killable with SIGKILL."""

    def __init__(self, role: str, kind: str, env: dict[str, str], logs: Path, *args: str) -> None:
        self.command = [sys.executable, "-m", "tests.outbox.chaos_apps", role, kind, *args]
        self.env = env
        self.log = logs / f"{role}.log"
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=self.log.open("a"), text=True
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.strip())

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to the broker or the database."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped after it."""
    name = f"svclink_chaos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _scalar(db: str, sql: str) -> int:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}") as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row is not None else 0


def _pending(db: str) -> int:
    return _scalar(db, "SELECT count(*) FROM svclink_outbox WHERE state = 'pending'")


#: the tables of each kind: (orders, shipments)
_TABLES = {"django": ("shop_order", "shop_shipment"), "sqlalchemy": ("orders", "shipments")}


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


class Node(Protocol):
    """What the run needs of a broker node: its URL, stop and start (tests/rabbit_node.RabbitNode)."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


def run(
    kind: str, orders: int, node: Node, *, interval: float = 0.01, log: Callable[[str], None] = print
) -> ChaosCounts:
    """One chaos run of ``orders`` orders on ``node``; see the module's docstring."""
    started = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="svclink-chaos-"))
    marker = logs / "handling"
    tag = uuid.uuid4().hex[:8]
    queue = f"chaos.shipping.{tag}"
    with database() as db:
        env = {
            **os.environ,
            "SHOP_PG_DB": db,
            "SVCLINK_AMQP_URL": node.url,
            "SVCLINK_SERVICE_NAME": "shop",
            "SVCLINK_OUTBOX_POLL_INTERVAL": "0.5",
            "SVCLINK_PUBLISH_TIMEOUT": "5",
            "CHAOS_EXCHANGE": f"chaos.shop.{tag}",
            "CHAOS_QUEUE": queue,
            "CHAOS_MARKER": str(marker),
        }
        Child("migrate", kind, env, logs).wait(120)
        consumer = Child("consume", kind, env, logs)
        if not _wait_for(lambda: "consuming" in consumer.lines, 60):
            raise RuntimeError("the consumer did not start")
        time.sleep(1.0)  # its queue declared and bound before the first event is relayed
        relay = Child("relay", kind, env, logs)
        producer = Child("produce", kind, env, logs, str(orders), str(interval))

        def made() -> int:
            return len(producer.lines)

        relay_kills = consumer_kills = 0
        broker_down = 0.0
        try:
            for share, fault in [
                (0.15, "relay"),
                (0.3, "broker"),
                (0.5, "consumer"),
                (0.65, "relay"),
                (0.8, "consumer"),
            ]:
                _wait_for(lambda: made() >= share * orders, 120)  # noqa: B023
                at = made()
                if fault == "relay":
                    relay.kill()
                    relay_kills += 1
                    log(f"{kind}: relay killed (SIGKILL) at order {at}; restarted")
                    relay.start()
                elif fault == "consumer":
                    in_handler = _wait_for(marker.exists, 30)
                    consumer.kill()
                    consumer_kills += in_handler
                    how = "mid-handler" if in_handler else "idle"
                    log(f"{kind}: consumer killed (SIGKILL) {how} at order {at}; restarted")
                    consumer.start()
                else:
                    down = time.monotonic()
                    node.stop()
                    time.sleep(BROKER_DOWN)
                    node.start()
                    broker_down = time.monotonic() - down
                    log(f"{kind}: broker stopped at order {at} for {broker_down:.1f} s (its start included)")
            producer.wait(600)
            committed = _scalar(db, f"SELECT count(*) FROM {_TABLES[kind][0]}")

            def settled() -> bool:
                shipped = _scalar(db, f"SELECT count(DISTINCT order_number) FROM {_TABLES[kind][1]}")
                return shipped >= committed and _pending(db) == 0

            _wait_for(settled, SETTLE_TIMEOUT)
            time.sleep(1.0)  # any late duplicate would land now
        finally:
            for child in (producer, relay, consumer):
                child.stop()
        order_table, shipment_table = _TABLES[kind]
        counts = ChaosCounts(
            kind=kind,
            orders_committed=_scalar(db, f"SELECT count(*) FROM {order_table}"),
            shipments=_scalar(db, f"SELECT count(*) FROM {shipment_table}"),
            events_handled=_scalar(db, f"SELECT count(*) FROM svclink_inbox WHERE queue = '{queue}'"),
            orders_rolled_back=orders - _scalar(db, f"SELECT count(*) FROM {order_table}"),
            duplicate_shipments=_scalar(
                db, f"SELECT count(*) - count(DISTINCT order_number) FROM {shipment_table}"
            ),
            shipments_for_rolled_back=_scalar(
                db,
                f"SELECT count(*) FROM {shipment_table} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {order_table} o WHERE o.number = s.order_number)",
            ),
            outbox_pending=_pending(db),
            outbox_failed=_scalar(db, "SELECT count(*) FROM svclink_outbox WHERE state = 'failed'"),
            relay_kills=relay_kills,
            consumer_kills_mid_handler=consumer_kills,
            broker_down_seconds=round(broker_down, 1),
            seconds=round(time.monotonic() - started, 1),
        )
    return counts


def report(counts: ChaosCounts) -> str:
    rows = [(f.name.replace("_", " "), getattr(counts, f.name)) for f in attrs.fields(ChaosCounts)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append(f"{'verdict':<{width}}  {'OK' if counts.ok else 'FAILED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--kind", choices=["django", "sqlalchemy", "both"], default="both")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between orders")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from tests.rabbit_node import private_node

    ok = True
    for kind in ["django", "sqlalchemy"] if args.kind == "both" else [args.kind]:
        with private_node() as node:
            counts = run(kind, args.orders, node, interval=args.interval)
        print(report(counts), flush=True)
        print(flush=True)
        ok = ok and counts.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
