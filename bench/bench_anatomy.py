"""Where a call over the fast transports spends its CPU, layer by layer, in one run.

Four variants of the same GET, one step apart: the raw client as a benchmark writes it;
the raw client sending the headers svclink sends (the request id, the caller, the
deadline, ``Accept``); svclink's transport alone, sending a request svclink planned
once (its wrapper over the library: the time bound, the bounded body, the failure
classification); and the whole ``http_dispatch`` (planning, the call flow, decoding).
aio runs 10 calls at a time over aiohttp, sync one thread over urllib3. ``table``
prints each variant's CPU per call and what it adds to the one before.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import urllib3

import svclink.aio
import svclink.sync
from svclink.core.http.attempts import HTTPRequest
from svclink.core.http.calls import Call

from .bench_sweep import configure
from .harness import Result, compare

CONCURRENCY = 10
VARIANTS = ("raw", "raw + svclink's headers", "svclink transport", "svclink call")
_ENDPOINT, _PARAMS = "/api/v1/users/{id}", {"id": 5}


def _planned(service: Any) -> HTTPRequest:
    """One request as svclink sends it (its headers, its time bound), planned once."""
    plan = service.plan("GET", _ENDPOINT, path_params=_PARAMS, wall=time.time())
    return Call.start(plan, time.monotonic()).request(time.monotonic())


def aio_anatomy(url: str, ops: int, rounds: int) -> list[Result]:
    configure(url)
    runner = asyncio.Runner()
    target = url + "/api/v1/users/5"
    service = runner.run(svclink.aio.get_service("user-fast"))
    request = _planned(service)
    headers = dict(request.headers)

    async def setup() -> tuple[aiohttp.ClientSession, Any]:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        return session, await service._pool()

    session, transport = runner.run(setup())

    async def raw() -> None:
        async with session.get(target) as response:
            await response.json()

    async def raw_headers() -> None:
        async with session.get(target, headers=headers) as response:
            await response.json()

    async def svclink_transport() -> None:
        json.loads((await transport.send(request))[3])

    async def svclink_call() -> None:
        await service.http_dispatch("GET", _ENDPOINT, path_params=_PARAMS)

    def batch(one: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        async def run() -> None:
            for _ in range(max(1, ops // CONCURRENCY)):
                await asyncio.gather(*(one() for _ in range(CONCURRENCY)))

        return lambda: runner.run(run())

    ones = (raw, raw_headers, svclink_transport, svclink_call)
    variants = {name: batch(one) for name, one in zip(VARIANTS, ones, strict=True)}
    n = max(1, ops // CONCURRENCY) * CONCURRENCY
    results = compare(f"aio aiohttp c={CONCURRENCY}", n, rounds, variants)
    runner.run(session.close())
    runner.run(svclink.aio.aclose())
    runner.close()
    return results


def sync_anatomy(url: str, ops: int, rounds: int) -> list[Result]:
    configure(url)
    target = url + "/api/v1/users/5"
    service = svclink.sync.get_service("user-fast")
    request = _planned(service)
    headers = dict(request.headers)
    pool = urllib3.PoolManager(maxsize=100, block=True)
    timeout = urllib3.Timeout(connect=3, read=10)
    transport = service._pool()

    def raw() -> None:
        pool.request("GET", target, timeout=timeout).json()

    def raw_headers() -> None:
        pool.request("GET", target, headers=headers, timeout=timeout).json()

    def svclink_transport() -> None:
        json.loads(transport.send(request)[3])

    def svclink_call() -> None:
        service.http_dispatch("GET", _ENDPOINT, path_params=_PARAMS)

    def batch(one: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(ops):
                one()

        return run

    ones = (raw, raw_headers, svclink_transport, svclink_call)
    variants = {name: batch(one) for name, one in zip(VARIANTS, ones, strict=True)}
    results = compare("sync urllib3 1 thread", ops, rounds, variants)
    pool.clear()
    svclink.sync.close()
    return results


def table(results: list[Result], out: Callable[[str], None] = print) -> None:
    """Each layer's CPU per call, what it adds to the one before, and the calls per second
    over the raw client's."""
    for benchmark in dict.fromkeys(r.benchmark for r in results):
        rows = {r.variant: r for r in results if r.benchmark == benchmark}
        raw = rows[VARIANTS[0]]
        out(f"{benchmark}: CPU per call, what each layer adds, calls/s over raw")
        before = None
        for name in VARIANTS:
            row = rows[name]
            added = "" if before is None else f"+{row.cpu_per_op_us - before.cpu_per_op_us:.1f} us"
            ratio = raw.median_seconds / row.median_seconds
            out(f"  {name:<26}{row.cpu_per_op_us:>8.1f} us{added:>12}{ratio:>8.2f}")
            before = row
        out("")
