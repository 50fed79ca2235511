"""What telemetry costs a call and a publish: CPU per operation with OpenTelemetry absent,
with the API but no SDK, and with the SDK recording, each in its own process.

Run: ``.venv/bin/python bench/telemetry.py [--calls N] [--publishes N] [--rounds R]``
(the publishes need RabbitMQ on 127.0.0.1:5672). It prints the client's CPU microseconds per
operation (median of the rounds) and each mode's ratio to the run without OpenTelemetry.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCHANGE = "bench.telemetry"
QUEUE = "bench.telemetry.sink"
MODES = ("absent", "api", "sdk")

#: run in the measured process: hides OpenTelemetry for "absent", installs an SDK for "sdk"
_CLIENT = r"""
import json, os, sys, time
mode = os.environ["TELEMETRY_MODE"]
if mode == "absent":
    for name in [n for n in sys.modules if n.startswith("opentelemetry")]:
        del sys.modules[name]
    sys.modules["opentelemetry"] = None  # an import of it fails, as when it is not installed
import svclink
from svclink.sync import get_service, Publisher
if mode == "sdk":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())  # spans recorded, exported nowhere
svclink.configure(service_connections=["bench"], service_hosts={"bench": os.environ["URL"]},
                  amqp_url="amqp://guest:guest@127.0.0.1:5672/")
calls, publishes = int(os.environ["CALLS"]), int(os.environ["PUBLISHES"])
user = get_service("bench")
for _ in range(50):
    user.http_dispatch("GET", "/x")
start = time.process_time()
for _ in range(calls):
    user.http_dispatch("GET", "/x")
call_cpu = (time.process_time() - start) / calls
publish_cpu = None
if publishes:
    pub = Publisher()
    for _ in range(20):
        pub.publish("bench.done", {}, exchange=os.environ["EXCHANGE"])
    start = time.process_time()
    for _ in range(publishes):
        pub.publish("bench.done", {"n": 1}, exchange=os.environ["EXCHANGE"])
    publish_cpu = (time.process_time() - start) / publishes
    pub.close()
print(json.dumps({"call": call_cpu, "publish": publish_cpu}))
"""


def _responder() -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "responder.py"), str(port_file)])
    deadline = time.monotonic() + 10
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the responder did not start")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}"


def _one(mode: str, url: str, calls: int, publishes: int) -> dict[str, float | None]:
    env = {**os.environ, "TELEMETRY_MODE": mode, "URL": url, "CALLS": str(calls), "PUBLISHES": str(publishes),
           "EXCHANGE": EXCHANGE}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT], env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} run failed: {done.stderr[-2000:]}")
    result: dict[str, float | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _sink(*, declare: bool) -> None:
    """A queue the publishes are routed to (declared before, deleted after)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/"))
    channel = connection.channel()
    if declare:
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        channel.queue_declare(QUEUE, arguments={"x-max-length": 1000})
        channel.queue_bind(QUEUE, EXCHANGE, routing_key="#")
    else:
        channel.queue_delete(QUEUE)
        channel.exchange_delete(EXCHANGE)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--publishes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    responder, url = _responder()
    _sink(declare=True)
    try:
        runs: dict[str, list[dict[str, float | None]]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:  # interleaved, so drift falls on every mode alike
                runs[mode].append(_one(mode, url, args.calls, args.publishes))
    finally:
        responder.kill()
        _sink(declare=False)
    print(f"{'operation':<10} {'mode':<8} {'CPU us/op':>10} {'ratio':>7}")
    for op in ("call", "publish"):
        base = None
        for mode in MODES:
            values = [v for r in runs[mode] if (v := r[op]) is not None]
            if not values:
                continue
            median = statistics.median(values) * 1e6
            base = median if base is None else base
            print(f"{op:<10} {mode:<8} {median:>10.1f} {median / base:>7.3f}")


if __name__ == "__main__":
    main()
