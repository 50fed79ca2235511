"""Alternating-rounds comparison: every variant runs the same batch, round after round.

Alternating (A B C, B C A, C A B, C B A, B A C, A C B, ...) rather than (A, A, A, B, B, B)
spreads any drift of the machine (another process, CPU frequency) over all variants
alike. The orders (the rotations, forwards and backwards) give each variant each place
in a round equally often (here the same raw loop measured 9 % apart in the first and
third places of every round) and, for two or three variants, each other variant just
before it equally often: rotations alone would always run A right after C, and a
variant that leaves work behind (a new HTTP client per call leaves garbage and closing
sockets) would slow the same variant every time. With four variants each follows two
of the other three, in turn. Medians ignore the odd slow round.

Each batch's CPU time (this process's, user and system) is taken beside its wall time.
The broker and the HTTP responder run in processes of their own, so it is the client's
own cost, which their pauses and disk writes do not reach; where the client keeps the
CPU busy (50 publishes in flight), it is what its throughput is made of.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen
class Result:
    benchmark: str
    variant: str
    ops: int
    median_seconds: float  # for one batch of ``ops``
    #: every round's time for the batch, in round order (round i of every variant ran together)
    rounds: tuple[float, ...] = ()
    #: the median CPU time of this process (user and system) for one batch
    cpu_seconds: float = 0.0

    @property
    def per_op_us(self) -> float:
        return self.median_seconds / self.ops * 1e6

    @property
    def cpu_per_op_us(self) -> float:
        return self.cpu_seconds / self.ops * 1e6

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.median_seconds


def compare(
    benchmark: str,
    ops: int,
    rounds: int,
    variants: dict[str, Callable[[], Any]],
    fresh: Callable[[], Any] | None = None,
    before: Callable[[], Any] | None = None,
) -> list[Result]:
    """Run each variant (one call = one batch of ``ops`` operations) ``rounds`` times, alternating.

    ``fresh``, if given, runs untimed before every round: the events benchmarks reopen
    their connections there, because how fast one AMQP connection is depends on where
    the broker happens to run it (the same raw loop on four connections at once took
    1023-1358 us a publish here), and a new draw each round keeps that luck out of the
    medians. ``before``, if given, runs untimed before every variant's batch (the consume
    benchmarks fill the queue that the batch drains).
    """
    for run in variants.values():  # warm-up: connections, imports, caches
        if before is not None:
            before()
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    orders = _orders(list(variants.items()))
    rounds = -(-rounds // len(orders)) * len(orders)  # whole cycles of the orders
    for round_ in range(rounds):
        if fresh is not None:
            fresh()
        for name, run in orders[round_ % len(orders)]:
            if before is not None:
                before()
            started, cpu_started = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
    return [
        Result(benchmark, name, ops, statistics.median(t), tuple(t), statistics.median(cpu[name]))
        for name, t in times.items()
    ]


def _orders(items: list[T]) -> list[list[T]]:
    """The rotations of ``items`` and of ``items`` reversed: every item in every place equally
    often; for two or three items that is every order once, so each also follows each other
    item equally often (for four, each follows two of the other three)."""
    if len(items) < 3:
        return [items[i:] + items[:i] for i in range(len(items))]
    backwards = items[::-1]
    return [seq[i:] + seq[:i] for seq in (items, backwards) for i in range(len(items))]


def rotating(*steps: Callable[[], Any]) -> Callable[[], None]:
    """A ``fresh`` for :func:`compare` that runs ``steps`` (one per variant: reopen its
    connection, untimed) in the next of :func:`_orders` at every call.

    Where a connection lands in the broker may depend on when it was opened, relative
    to the others; always opening one variant's first would give it the same place
    round after round.
    """
    orders = _orders(list(steps))
    calls = 0

    def run() -> None:
        nonlocal calls
        order, calls = orders[calls % len(orders)], calls + 1
        for step in order:
            step()

    return run


@attrs.frozen
class Target:
    """A stated target: ``variant`` time / ``baseline`` time compared with ``limit``; with no
    limit, a ratio reported for reference only."""

    benchmark: str
    variant: str
    baseline: str
    #: "<=" (the variant may be at most this many times the baseline's time) or ">=" (speed-up)
    op: str
    limit: float | None

    def _pair(self, results: list[Result]) -> tuple[Result, Result] | None:
        """The variant's result and the baseline's, if both ran."""
        by = {(r.benchmark, r.variant): r for r in results}
        a, b = by.get((self.benchmark, self.variant)), by.get((self.benchmark, self.baseline))
        return None if a is None or b is None else (a, b)

    def check(self, results: list[Result]) -> tuple[float, bool] | None:
        pair = self._pair(results)
        if pair is None:
            return None
        a, b = pair
        if self.op == "<=":
            ratio = a.median_seconds / b.median_seconds
            return ratio, self.limit is None or ratio <= self.limit
        speedup = b.median_seconds / a.median_seconds
        return speedup, self.limit is None or speedup >= self.limit

    def cpu_ratio(self, results: list[Result]) -> float | None:
        """The variant's CPU time per batch over the baseline's: the client's own cost, which
        the broker's or the server's pauses do not reach (they are wall time, not CPU)."""
        pair = self._pair(results)
        if pair is None or self.op != "<=" or not pair[0].cpu_seconds or not pair[1].cpu_seconds:
            return None
        return pair[0].cpu_seconds / pair[1].cpu_seconds

    def spread(self, results: list[Result]) -> tuple[float, float] | None:
        """The quartiles of the same ratio taken round by round (each round's variants ran
        side by side): how far one round's figure strays, so a reader can tell a ratio
        0.02 over its limit from one that is over it in most rounds."""
        pair = self._pair(results)
        if pair is None or len(pair[0].rounds) < 4 or len(pair[0].rounds) != len(pair[1].rounds):
            return None
        a, b = pair
        pairs = zip(a.rounds, b.rounds, strict=True)
        ratios = [x / y if self.op == "<=" else y / x for x, y in pairs]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return q1, q3


def report(results: list[Result], targets: list[Target], out: Callable[[str], None] = print) -> None:
    out(f"{'benchmark':<28} {'variant':<26} {'per op':>10} {'ops/s':>10} {'CPU/op':>10}")
    for r in results:
        per_op, cpu = f"{r.per_op_us:>8.1f}us", f"{r.cpu_per_op_us:>8.1f}us"
        out(f"{r.benchmark:<28} {r.variant:<26} {per_op} {r.ops_per_second:>10.0f} {cpu}")
    out("")
    out("targets:")
    for t in targets:
        checked = t.check(results)
        if checked is None:
            continue
        value, ok = checked
        what = "time ratio" if t.op == "<=" else "speed-up"
        verdict = "info" if t.limit is None else "MET " if ok else "MISS"
        notes = [] if t.limit is None else [f"target {t.op} {t.limit}"]
        spread = t.spread(results)
        if spread is not None:
            notes.append(f"middle half of rounds {spread[0]:.2f}-{spread[1]:.2f}")
        cpu_ratio = t.cpu_ratio(results)
        if cpu_ratio is not None:
            notes.append(f"CPU ratio {cpu_ratio:.2f}")
        note = f" ({', '.join(notes)})" if notes else ""
        out(f"  {verdict} {t.benchmark}: {t.variant} vs {t.baseline}: {what} {value:.2f}{note}")
