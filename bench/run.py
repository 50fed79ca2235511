"""svclink's benchmarks: ``python bench/run.py [--quick] [--json FILE] [--only SECTION ...]``.

``--only sweep`` runs HTTP at growing concurrency over every transport beside the raw
clients (aio: 1, 10, 50, 100 calls at a time; sync: 1, 8, 32 threads) and prints a table
of throughput ratios; ``--only anatomy`` shows where a call over the fast transports
spends its CPU, layer by layer.

Each benchmark runs svclink and the raw library on the same work, in the same run, in
alternating rounds, against a responder in its own process on 127.0.0.1, and prints
medians and ratios. Nothing here is a pass/fail test: targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_anatomy, bench_http, bench_sweep, resources
from bench.harness import Result, Target, report

SECTIONS = ("http", "tls", "sweep", "anatomy", "cpu", "events", "memory")


@contextmanager
def responder(*tls_files: str) -> Iterator[str]:
    """The loopback responder in its own process (over TLS given a certificate chain and key
    file); yields its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        script = str(Path(__file__).parent / "responder.py")
        proc = subprocess.Popen([sys.executable, script, port_file, *tls_files])
        try:
            for _ in range(100):
                if os.path.exists(port_file) and Path(port_file).read_text():
                    break
                time.sleep(0.05)
            scheme = "https" if tls_files else "http"
            yield f"{scheme}://127.0.0.1:{Path(port_file).read_text()}"
        finally:
            proc.terminate()
            proc.wait(5)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    python = platform.python_version()
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), Python {python}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer operations and rounds (under two minutes)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="alternating rounds per variant (default 9, quick 3); the one-at-a-time publish"
        " comparisons run as many publishes in rounds of 50",
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    args = parser.parse_args(argv)
    sections = args.only or SECTIONS
    ops, rounds = (100, 3) if args.quick else (1000, 9)
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        rounds = args.rounds
    results: list[Result] = []
    targets: list[Target] = []
    extra: dict[str, object] = {}
    print(f"svclink benchmarks on {machine()}; {ops} ops x {rounds} rounds per variant")
    with responder() as url:
        bench_http.configure(url)
        if "http" in sections:
            results += bench_http.sync_http(url, ops, rounds)
            results += bench_http.aio_http(url, ops, rounds)
            targets += bench_http.TARGETS
        if "tls" in sections:
            from bench import bench_tls

            with bench_tls.certificates() as (ca_file, chain, key), responder(chain, key) as tls_url:
                tls_results = bench_tls.run(url, tls_url, ca_file, ops, rounds)
                results, targets = results + tls_results, targets + bench_tls.TARGETS
                extra["tls_cost_us"] = added = bench_tls.tls_cost(tls_results)
                print("what TLS adds to a call on a reused connection (wall, CPU):")
                for who, tls_us in added.items():
                    print(f"  {who}: {tls_us['wall_us']:.1f} us, {tls_us['cpu_us']:.1f} us")
        if "sweep" in sections:
            bench_sweep.configure(url)
            swept = bench_sweep.aio_sweep(url, ops, rounds) + bench_sweep.sync_sweep(url, ops, rounds)
            bench_sweep.table(swept)
            results += swept
            bench_http.configure(url)
        if "anatomy" in sections:
            layers = bench_anatomy.aio_anatomy(url, ops, rounds)
            layers += bench_anatomy.sync_anatomy(url, ops, rounds)
            bench_anatomy.table(layers)
            results += layers
            bench_http.configure(url)
        if "cpu" in sections:
            us = min(bench_http.cpu_per_call(ops * 20) for _ in range(3))
            extra["cpu_us_per_call"] = round(us, 2)
            print(f"svclink CPU per call, no I/O: {us:.1f} us (target <= 25 us)")
        if "events" in sections:
            try:
                from bench import bench_events
            except ImportError as exc:
                print(f"events benchmarks not available: {exc}")
            else:
                r, t = bench_events.run(ops, rounds, consume=2_000 if args.quick else 10_000)
                results, targets = results + r, targets + t
                extra["publish_prepare_us"] = cost = bench_events.prepare_cost()
                print(
                    "preparing a publish (svclink, raw): "
                    + ", ".join(f"{k} {v:.1f} us" for k, v in cost.items())
                )
        if "memory" in sections:
            n = 10_000 if args.quick else 100_000
            extra["memory"] = growth = resources.growth(url, n)
            print(f"resources after {n} calls / publishes: {growth}")
    print()
    report(results, targets)
    if args.json:
        figures = {
            "machine": machine(),
            "ops": ops,
            "rounds": rounds,
            "results": [
                {
                    "benchmark": r.benchmark,
                    "variant": r.variant,
                    "per_op_us": round(r.per_op_us, 2),
                    "ops_per_second": round(r.ops_per_second),
                    "cpu_per_op_us": round(r.cpu_per_op_us, 2),
                    "rounds_per_op_us": [round(t / r.ops * 1e6, 2) for t in r.rounds],
                }
                for r in results
            ],
            **extra,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
