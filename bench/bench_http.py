"""HTTP: svclink against raw requests and httpx, on the same loopback responder."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import requests

import svclink
import svclink.aio
import svclink.sync
from svclink.core.http.calls import Call
from svclink.core.http.service import BaseService

from .harness import Result, Target, compare

TARGETS = [
    Target("http sync GET", "svclink", "requests.Session", "<=", 1.05),
    Target("http sync GET", "svclink", "requests.get per call", ">=", 1.5),
    Target("http sync POST", "svclink", "requests.Session", "<=", 1.05),
    Target("http aio GET c=1", "svclink", "httpx.AsyncClient shared", "<=", 1.05),
    Target("http aio GET c=1", "svclink", "httpx.AsyncClient per call", ">=", 2.0),
    Target("http aio GET c=50", "svclink", "httpx.AsyncClient shared", "<=", 1.05),
    Target("http aio GET c=50", "svclink", "httpx.AsyncClient per call", ">=", 2.0),
]


def configure(url: str) -> None:
    svclink.configure(service_name="bench", service_connections=["user"], service_hosts={"user": url})


def sync_http(url: str, ops: int, rounds: int) -> list[Result]:
    user = svclink.sync.get_service("user")
    session = requests.Session()
    target = f"{url}/api/v1/users/5"
    payload = {"name": "ada", "tags": ["a", "b"]}

    def svclink_get() -> None:
        for _ in range(ops):
            user.http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

    def raw_get() -> None:
        for _ in range(ops):
            session.get(target, timeout=(3, 10)).json()

    def per_call_get() -> None:
        for _ in range(ops):
            requests.get(target, timeout=(3, 10)).json()

    def svclink_post() -> None:
        for _ in range(ops):
            user.http_dispatch("POST", "/api/v1/users/", payload=payload)

    def raw_post() -> None:
        for _ in range(ops):
            session.post(f"{url}/api/v1/users/", json=payload, timeout=(3, 10)).json()

    results = compare(
        "http sync GET",
        ops,
        rounds,
        {"svclink": svclink_get, "requests.Session": raw_get, "requests.get per call": per_call_get},
    )
    results += compare("http sync POST", ops, rounds, {"svclink": svclink_post, "requests.Session": raw_post})
    session.close()
    return results


def aio_http(url: str, ops: int, rounds: int) -> list[Result]:
    runner = asyncio.Runner()
    target = f"{url}/api/v1/users/5"
    shared = runner.run(_make_client())
    results: list[Result] = []
    for concurrency in (1, 50):
        batches = max(1, ops // concurrency)

        async def run(one: Any, batches: int = batches, concurrency: int = concurrency) -> None:
            for _ in range(batches):
                await asyncio.gather(*(one() for _ in range(concurrency)))

        async def svclink_one() -> None:
            user = await svclink.aio.get_service("user")
            await user.http_dispatch("GET", "/api/v1/users/{id}", path_params={"id": 5})

        async def raw_one() -> None:
            (await shared.get(target)).json()

        async def per_call_one() -> None:
            async with httpx.AsyncClient() as client:
                (await client.get(target)).json()

        results += compare(
            f"http aio GET c={concurrency}",
            batches * concurrency,
            rounds,
            {
                "svclink": lambda: runner.run(run(svclink_one)),
                "httpx.AsyncClient shared": lambda: runner.run(run(raw_one)),
                "httpx.AsyncClient per call": lambda: runner.run(run(per_call_one)),
            },
        )
    runner.run(shared.aclose())
    runner.run(svclink.aio.aclose())
    runner.close()
    return results


async def _make_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))


def cpu_per_call(ops: int) -> float:
    """svclink's own work per call (plan, URL, headers, response decoding), no I/O: microseconds."""
    service = BaseService("user", svclink.get_settings())
    body = b'{"id":5,"name":"ada"}'
    headers = {"content-type": "application/json"}
    started = time.perf_counter()
    for _ in range(ops):
        plan = service.plan("GET", "/api/v1/users/{id}", path_params={"id": 5}, query_params={"q": "x"})
        call = Call.start(plan, 0.0, service.guard)
        call.request(0.0)
        call.received(200, "OK", headers, body, now=0.001, wall=0.0, rand=0.5)
    return (time.perf_counter() - started) / ops * 1e6
