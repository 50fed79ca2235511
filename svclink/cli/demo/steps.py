"""How the demo runs and prints a step: one line per step, with the side, the outcome and the time it took."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import svclink


def line(side: str, what: str, started: float, outcome: str) -> str:
    took = (time.perf_counter() - started) * 1000
    return f"  [{side:4}] {what:<36} {outcome}  ({took:.1f} ms)"


def raised(exc: svclink.APIException) -> str:
    return f"raised {type(exc).__name__}(status={exc.status_code}, message={exc.message!r})"


def step(what: str, run: Callable[[], Any], out: Callable[[str], None]) -> None:
    started = time.perf_counter()
    try:
        outcome = f"-> {run()!r}"
    except svclink.APIException as exc:
        outcome = raised(exc)
    out(line("sync", what, started, outcome))


async def astep(what: str, run: Callable[[], Awaitable[Any]], out: Callable[[str], None]) -> None:
    started = time.perf_counter()
    try:
        outcome = f"-> {await run()!r}"
    except svclink.APIException as exc:
        outcome = raised(exc)
    out(line("aio", what, started, outcome))
