"""HTTP at growing concurrency: every svclink transport beside the raw client it wraps.

The aio side runs c = 1, 10, 50, 100 calls at a time on one event loop (svclink over
httpx and over aiohttp, a shared ``httpx.AsyncClient``, a shared ``aiohttp.ClientSession``);
the sync side runs 1, 8, 32 threads (svclink over requests and over urllib3, a shared
``requests.Session``, a shared ``urllib3.PoolManager``). Both svclink transports run in
one process, as two services on the same responder (``sync_transports`` and
``aio_transports`` choose per service). ``table`` prints throughput ratios: svclink's
calls per second over its raw client's (1.00: as fast; above: faster).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import httpx
import requests
import urllib3

import svclink
import svclink.aio
import svclink.sync

from .harness import Result, compare

CONCURRENCY = (1, 10, 50, 100)
THREADS = (1, 8, 32)
#: svclink variant name -> the raw client it wraps
WRAPS = {
    "svclink httpx": "raw httpx",
    "svclink aiohttp": "raw aiohttp",
    "svclink requests": "raw requests",
    "svclink urllib3": "raw urllib3",
}
_SERVICES = {"httpx": "user", "aiohttp": "user-fast", "requests": "user", "urllib3": "user-fast"}
_PATH = "/api/v1/users/5"


def configure(url: str) -> None:
    """Services ``user`` (default transports) and ``user-fast`` (urllib3, aiohttp) at ``url``."""
    svclink.configure(
        service_name="bench",
        service_connections=["user", "user-fast"],
        service_hosts={"user": url, "user-fast": url},
        sync_transports={"user-fast": "urllib3"},
        aio_transports={"user-fast": "aiohttp"},
    )


def aio_sweep(url: str, ops: int, rounds: int, levels: tuple[int, ...] = CONCURRENCY) -> list[Result]:
    runner = asyncio.Runner()
    target = url + _PATH
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    httpx_client = runner.run(_make(lambda: httpx.AsyncClient(limits=limits)))
    aiohttp_session = runner.run(
        _make(lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)))
    )
    services = {name: runner.run(svclink.aio.get_service(_SERVICES[name])) for name in ("httpx", "aiohttp")}

    async def svclink_httpx() -> None:
        await services["httpx"].http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    async def svclink_aiohttp() -> None:
        await services["aiohttp"].http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    async def raw_httpx() -> None:
        (await httpx_client.get(target)).json()

    async def raw_aiohttp() -> None:
        async with aiohttp_session.get(target) as response:
            await response.json()

    one_call = {
        "svclink httpx": svclink_httpx,
        "raw httpx": raw_httpx,
        "svclink aiohttp": svclink_aiohttp,
        "raw aiohttp": raw_aiohttp,
    }
    results: list[Result] = []
    for c in levels:
        batches = max(1, ops // c)

        def batch(one: Callable[[], Coroutine[Any, Any, None]], batches: int = batches, c: int = c) -> None:
            async def run() -> None:
                for _ in range(batches):
                    await asyncio.gather(*(one() for _ in range(c)))

            runner.run(run())

        variants: dict[str, Callable[[], Any]] = {
            name: functools.partial(batch, one) for name, one in one_call.items()
        }
        results += compare(f"aio c={c}", batches * c, rounds, variants)
    runner.run(httpx_client.aclose())
    runner.run(aiohttp_session.close())
    runner.run(svclink.aio.aclose())
    runner.close()
    return results


async def _make(factory: Callable[[], Any]) -> Any:
    return factory()  # a client made on the loop that will use it


def sync_sweep(url: str, ops: int, rounds: int, levels: tuple[int, ...] = THREADS) -> list[Result]:
    target = url + _PATH
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=100, pool_block=True))
    pool = urllib3.PoolManager(maxsize=100, block=True)
    services = {name: svclink.sync.get_service(_SERVICES[name]) for name in ("requests", "urllib3")}

    def svclink_requests() -> None:
        services["requests"].http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    def svclink_urllib3() -> None:
        services["urllib3"].http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    def raw_requests() -> None:
        session.get(target, timeout=(3, 10)).json()

    def raw_urllib3() -> None:
        pool.request("GET", target, timeout=urllib3.Timeout(connect=3, read=10)).json()

    one_call = {
        "svclink requests": svclink_requests,
        "raw requests": raw_requests,
        "svclink urllib3": svclink_urllib3,
        "raw urllib3": raw_urllib3,
    }
    results: list[Result] = []
    for threads in levels:
        per_thread = max(1, ops // threads)
        executor = concurrent.futures.ThreadPoolExecutor(threads)

        def batch(
            one: Callable[[], None],
            per_thread: int = per_thread,
            threads: int = threads,
            executor: concurrent.futures.ThreadPoolExecutor = executor,
        ) -> None:
            def loop(_: int) -> None:
                for _ in range(per_thread):
                    one()

            list(executor.map(loop, range(threads)))

        variants: dict[str, Callable[[], Any]] = {
            name: functools.partial(batch, one) for name, one in one_call.items()
        }
        results += compare(f"sync threads={threads}", per_thread * threads, rounds, variants)
        executor.shutdown()
    session.close()
    pool.clear()
    svclink.sync.close()
    return results


def table(results: list[Result], out: Callable[[str], None] = print) -> None:
    """Calls per second of every variant, and each svclink transport's over its raw client's."""
    by = {(r.benchmark, r.variant): r for r in results}
    for side, pairs in (("aio", ("httpx", "aiohttp")), ("sync", ("requests", "urllib3"))):
        levels = sorted({r.benchmark for r in results if r.benchmark.startswith(side)}, key=_level)
        if not levels:
            continue
        head = (
            f"{'':<16}"
            + "".join(f"{name:>18}" for name in pairs)
            + "".join(f"{'raw ' + name + ' /s':>18}" for name in pairs)
        )
        out(f"{side}: svclink calls/s over the raw client's (CPU per call: svclink, raw)")
        out(head)
        for level in levels:
            cells, raws = [], []
            for name in pairs:
                mine, raw = by.get((level, f"svclink {name}")), by.get((level, f"raw {name}"))
                if mine is None or raw is None:
                    cells.append(f"{'-':>18}")
                    raws.append(f"{'-':>18}")
                    continue
                ratio = raw.median_seconds / mine.median_seconds
                cpu = f"({mine.cpu_per_op_us:.0f}, {raw.cpu_per_op_us:.0f} us)"
                cells.append(f"{ratio:>5.2f} {cpu:>12}")
                raws.append(f"{raw.ops_per_second:>18.0f}")
            out(f"{level:<16}" + "".join(cells) + "".join(raws))
        out("")


def _level(benchmark: str) -> int:
    return int(benchmark.rsplit("=", 1)[1])
