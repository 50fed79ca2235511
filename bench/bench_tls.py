"""TLS: the cost of a call over HTTPS on a reused connection, svclink against the raw clients.

One responder speaks TLS with a certificate of a private CA made for the run (trustme);
svclink is configured with that CA (``tls_ca_file``) and each raw client is given the
same CA the way its users give it. Every variant keeps its connection, so the figures
are the cost of encrypting and decrypting a call, not of handshakes. svclink and the raw
client over plain HTTP to a plain responder run beside them: the difference is what TLS
costs a call, for each (:func:`tls_cost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import requests
import urllib3

import svclink
import svclink.aio
import svclink.sync

from .harness import Result, Target, compare

PATH = "/api/v1/users/5"
SYNC = {"requests": "requests.Session", "urllib3": "urllib3.PoolManager"}
AIO = {"httpx": "httpx.AsyncClient", "aiohttp": "aiohttp.ClientSession"}

TARGETS = [
    *(Target(f"https sync GET {t}", "svclink", f"{raw} (TLS)", "<=", 1.05) for t, raw in SYNC.items()),
    *(Target(f"https aio GET {t}", "svclink", f"{raw} (TLS)", "<=", 1.05) for t, raw in AIO.items()),
    *(Target(f"https sync GET {t}", "svclink", "svclink over http", "<=", None) for t in SYNC),
    *(
        Target(f"https sync GET {t}", f"{raw} (TLS)", f"{raw} over http", "<=", None)
        for t, raw in SYNC.items()
    ),
    *(Target(f"https aio GET {t}", "svclink", "svclink over http", "<=", None) for t in AIO),
    *(Target(f"https aio GET {t}", f"{raw} (TLS)", f"{raw} over http", "<=", None) for t, raw in AIO.items()),
]


def tls_cost(results: list[Result]) -> dict[str, dict[str, float]]:
    """What TLS adds to a call, per transport: HTTPS time less plain HTTP time, wall and CPU
    (microseconds), for svclink and for the raw client."""
    by = {(r.benchmark, r.variant): r for r in results}
    costs: dict[str, dict[str, float]] = {}
    for side, table in (("sync", SYNC), ("aio", AIO)):
        for transport, raw in table.items():
            group = f"https {side} GET {transport}"
            pairs = {"svclink": ("svclink", "svclink over http"), raw: (f"{raw} (TLS)", f"{raw} over http")}
            for who, (tls, plain) in pairs.items():
                a, b = by.get((group, tls)), by.get((group, plain))
                if a is not None and b is not None:
                    costs[f"{transport}: {who}"] = {
                        "wall_us": round(a.per_op_us - b.per_op_us, 1),
                        "cpu_us": round(a.cpu_per_op_us - b.cpu_per_op_us, 1),
                    }
    return costs


@contextlib.contextmanager
def certificates() -> Iterator[tuple[str, str, str]]:
    """A CA file, and a certificate chain and key for 127.0.0.1 signed by it, in a temporary folder."""
    import trustme  # a test dependency: the benchmarks run from a development install

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        ca_file, chain, key = Path(tmp, "ca.pem"), Path(tmp, "server.pem"), Path(tmp, "server.key")
        ca.cert_pem.write_to_path(ca_file)
        cert.cert_chain_pems[0].write_to_path(chain)
        cert.private_key_pem.write_to_path(key)
        yield str(ca_file), str(chain), str(key)


def _configure(url: str, tls_url: str, ca_file: str) -> None:
    """One service per transport over TLS, and its twin over plain HTTP."""
    hosts: dict[str, str] = {}
    sync: dict[str, str] = {}
    aio: dict[str, str] = {}
    for transport, table in (*((t, sync) for t in SYNC), *((t, aio) for t in AIO)):
        hosts[f"tls-{transport}"], hosts[f"plain-{transport}"] = tls_url, url
        table[f"tls-{transport}"] = table[f"plain-{transport}"] = transport
    svclink.configure(
        service_name="bench",
        service_connections=list(hosts),
        service_hosts=hosts,
        sync_transports=sync,
        aio_transports=aio,
        tls_ca_file=ca_file,
    )


def run(url: str, tls_url: str, ca_file: str, ops: int, rounds: int) -> list[Result]:
    _configure(url, tls_url, ca_file)
    return _sync(url, tls_url, ca_file, ops, rounds) + _aio(url, tls_url, ca_file, ops, rounds)


def _sync(url: str, tls_url: str, ca_file: str, ops: int, rounds: int) -> list[Result]:
    session = requests.Session()
    session.trust_env = False  # as svclink's: else REQUESTS_CA_BUNDLE would replace the CA given here
    session.verify = ca_file
    pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca_file)
    timeout = urllib3.Timeout(3, 10)
    raw: dict[str, Callable[[str], Any]] = {
        "requests": lambda base: session.get(base + PATH, timeout=(3, 10)).json(),
        "urllib3": lambda base: pool.request("GET", base + PATH, timeout=timeout).json(),
    }
    results: list[Result] = []
    for transport, name in SYNC.items():
        over_tls = svclink.sync.get_service(f"tls-{transport}")
        plain = svclink.sync.get_service(f"plain-{transport}")
        one = raw[transport]

        results += compare(
            f"https sync GET {transport}",
            ops,
            rounds,
            {
                "svclink": _loop(ops, partial(over_tls.http_dispatch, "GET", PATH)),
                f"{name} (TLS)": _loop(ops, partial(one, tls_url)),
                "svclink over http": _loop(ops, partial(plain.http_dispatch, "GET", PATH)),
                f"{name} over http": _loop(ops, partial(one, url)),
            },
        )
    session.close()
    pool.clear()
    svclink.sync.close()
    return results


def _loop(ops: int, call: Callable[[], Any]) -> Callable[[], None]:
    def batch() -> None:
        for _ in range(ops):
            call()

    return batch


def _aio(url: str, tls_url: str, ca_file: str, ops: int, rounds: int) -> list[Result]:
    runner = asyncio.Runner()
    context = ssl.create_default_context(cafile=ca_file)
    client = runner.run(_httpx_client(context))
    session = runner.run(_aiohttp_session(context))

    async def httpx_one(base: str) -> None:
        (await client.get(base + PATH)).json()

    async def aiohttp_one(base: str) -> None:
        async with session.get(base + PATH) as response:
            await response.json()

    raw = {"httpx": httpx_one, "aiohttp": aiohttp_one}
    results: list[Result] = []
    for transport, name in AIO.items():

        def loop(one: Callable[[], Coroutine[Any, Any, Any]]) -> Callable[[], None]:
            async def batch() -> None:
                for _ in range(ops):
                    await one()

            return lambda: runner.run(batch())

        def svclink_one(service: str) -> Callable[[], Coroutine[Any, Any, Any]]:
            async def one() -> None:
                await (await svclink.aio.get_service(service)).http_dispatch("GET", PATH)

            return one

        results += compare(
            f"https aio GET {transport}",
            ops,
            rounds,
            {
                "svclink": loop(svclink_one(f"tls-{transport}")),
                f"{name} (TLS)": loop(partial(raw[transport], tls_url)),
                "svclink over http": loop(svclink_one(f"plain-{transport}")),
                f"{name} over http": loop(partial(raw[transport], url)),
            },
        )
    runner.run(client.aclose())
    runner.run(session.close())
    runner.run(svclink.aio.aclose())
    runner.close()
    return results


async def _httpx_client(context: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=context)


async def _aiohttp_session(context: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
