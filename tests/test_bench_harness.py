"""The benchmark harness (``bench/harness.py``): what its figures mean, with no broker or server.

The benchmarks themselves are never run by the suite (their figures are reported, not
asserted); these tests pin the harness that turns rounds into the medians and ratios
``docs/performance.rst`` quotes.
"""

from __future__ import annotations

import time

from bench.harness import Result, Target, compare, report


def _busy() -> None:
    """CPU work, a few milliseconds of it."""
    sum(i * i for i in range(100_000))


def _idle() -> None:
    """Waiting, as a client waits for a broker: wall time, no CPU."""
    time.sleep(0.005)


def test_every_variant_runs_every_round_in_turn_with_fresh_before_each_round() -> None:
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    results = compare("b", 1, 5, variants, fresh=lambda: calls.append("fresh"))
    # 5 rounds become 6: whole cycles of the six orders of three variants
    assert [len(r.rounds) for r in results] == [6, 6, 6]
    rounds = "".join(calls[3:]).split("fresh")[1:]  # after the warm-up of each variant
    assert len(rounds) == 6 and sorted(rounds) == sorted(["ABC", "BCA", "CAB", "CBA", "BAC", "ACB"])


def test_the_cpu_column_tells_a_client_that_works_from_one_that_waits() -> None:
    """Both variants take wall time; only one of them spends it on this process's CPU."""
    results = compare("b", 1, 4, {"busy": _busy, "idle": _idle})
    busy, idle = results
    assert idle.median_seconds >= 0.005 and idle.cpu_seconds < idle.median_seconds / 2
    assert busy.cpu_seconds > 0
    ratio = Target("b", "busy", "idle", "<=", None).cpu_ratio(results)
    assert ratio is not None and ratio > 2


def test_a_target_line_gives_the_ratio_its_verdict_and_the_spread_of_the_rounds() -> None:
    results = [
        Result("b", "svclink", 10, 1.0, (1.0, 1.0, 1.1, 0.9), 0.8),
        Result("b", "raw", 10, 1.0, (1.0, 1.0, 1.0, 1.0), 0.75),
    ]
    lines: list[str] = []
    report(results, [Target("b", "svclink", "raw", "<=", 1.053)], out=lines.append)
    verdict = lines[-1]
    assert verdict.startswith("  MET  b: svclink vs raw: time ratio 1.00")
    assert "CPU ratio 1.07" in verdict and "middle half of rounds" in verdict
    missed = Target("b", "svclink", "raw", "<=", 0.95).check(results)
    assert missed == (1.0, False)


def test_the_sweep_table_gives_each_transport_its_own_raw_client_as_the_baseline() -> None:
    from bench.bench_sweep import table

    def result(level: str, variant: str, seconds: float) -> Result:
        return Result(level, variant, 100, seconds, cpu_seconds=seconds / 2)

    results = [
        result("aio c=1", "svclink httpx", 0.5),
        result("aio c=1", "raw httpx", 0.4),
        result("aio c=1", "svclink aiohttp", 0.1),
        result("aio c=1", "raw aiohttp", 0.1),
        result("aio c=50", "svclink httpx", 0.2),
        result("aio c=50", "raw httpx", 0.3),
        result("aio c=10", "svclink httpx", 0.2),
    ]
    lines: list[str] = []
    table(results, lines.append)
    rows = {line.split()[1]: line for line in lines if line.startswith("aio c=")}
    assert list(rows) == ["c=1", "c=10", "c=50"]  # by concurrency, not as text
    assert "0.80 (2500, 2000 us)" in rows["c=1"] and "1.00 (500, 500 us)" in rows["c=1"]
    assert "1.50 (1000, 1500 us)" in rows["c=50"]
    assert "-" in rows["c=10"]  # its raw client did not run: no ratio
    assert not any(line.startswith("sync") for line in lines)


def test_the_anatomy_table_shows_what_each_layer_adds_to_the_one_before() -> None:
    from bench.bench_anatomy import VARIANTS, table

    cpu = dict(zip(VARIANTS, (0.0060, 0.0066, 0.0075, 0.0110), strict=True))
    results = [
        Result("aio aiohttp c=10", name, 100, seconds * 1.2, cpu_seconds=seconds)
        for name, seconds in cpu.items()
    ]
    lines: list[str] = []
    table(results, lines.append)
    assert lines[0].startswith("aio aiohttp c=10:")
    rows = {line.split("  ")[1].strip(): line for line in lines[1:5]}
    assert "60.0 us" in rows["raw"] and "1.00" in rows["raw"] and "+" not in rows["raw"]
    assert "+6.0 us" in rows["raw + svclink's headers"]
    assert "+35.0 us" in rows["svclink call"] and rows["svclink call"].endswith("0.55")
