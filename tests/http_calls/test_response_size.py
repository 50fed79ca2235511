"""``max_response_size``: a bound on the body kept in memory, checked as the body arrives.

The announced Content-Length is checked before reading; a body without one (chunked, or
compressed) is read until it passes the bound. Either way ResponseTooLarge says the
status, the bound and the announced size, and the connection is closed, not drained.
A body within the bound costs about its own size in memory, measured in a process of
its own against uvicorn in another.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import svclink

from ..conftest import Side, use_server
from ..server import Reply, TestServer
from ..services import ROOT, Uvicorn, clean_env

MIB = 1024 * 1024


def test_a_content_length_over_the_bound_raises_before_the_body_is_read(
    side: Side, server: TestServer
) -> None:
    use_server(server, max_response_size=MIB)
    server.route("GET", "/big", Reply(200, body=b"x" * (2 * MIB)))
    server.route("GET", "/small", Reply(200, {"ok": True}))
    with pytest.raises(svclink.ResponseTooLarge) as info:
        side.call("user", "GET", "/big")
    err = info.value
    assert (err.status_code, err.size, err.limit) == (200, 2 * MIB, MIB)
    assert "max_response_size" in str(err) and str(MIB) in str(err)
    assert side.call("user", "GET", "/small") == {"ok": True}
    first, second = server.requests[0], server.requests[-1]
    assert first.peer != second.peer  # the connection with an unread body was closed
    assert len(server.requests) == 2  # not retried


def test_a_body_without_a_length_raises_once_it_passes_the_bound(side: Side, server: TestServer) -> None:
    use_server(server)
    server.route("GET", "/big", Reply(200, body=b"x" * (3 * MIB), chunked=True))
    with pytest.raises(svclink.ResponseTooLarge) as info:
        side.call("user", "GET", "/big", raw_response=True, max_response_size=MIB)
    assert (info.value.size, info.value.limit) == (None, MIB)


def test_a_compressed_body_is_bounded_by_its_decoded_size(side: Side, server: TestServer) -> None:
    use_server(server, max_response_size=MIB)
    packed = gzip.compress(b"{}" + b" " * (2 * MIB))
    server.route("GET", "/zip", Reply(200, body=packed, headers={"Content-Encoding": "gzip"}))
    assert len(packed) < MIB
    with pytest.raises(svclink.ResponseTooLarge):
        side.call("user", "GET", "/zip")


def test_a_body_exactly_at_the_bound_is_returned(side: Side, server: TestServer) -> None:
    use_server(server, max_response_size=MIB)
    server.route("GET", "/exact", Reply(200, body=b"y" * MIB, chunked=True))
    server.route("GET", "/exact-length", Reply(200, body=b"y" * MIB))
    assert side.call("user", "GET", "/exact", raw_response=True).content == b"y" * MIB
    assert side.call("user", "GET", "/exact-length", raw_response=True).content == b"y" * MIB


def test_an_error_body_over_the_bound_raises_with_the_error_status(side: Side, server: TestServer) -> None:
    use_server(server, max_response_size=1000, retry=svclink.RetryPolicy(total=0))
    server.route("GET", "/boom", Reply(500, body=b"e" * 5000))
    with pytest.raises(svclink.ResponseTooLarge) as info:
        side.call("user", "GET", "/boom")
    assert info.value.status_code == 500


def test_no_bound_when_the_setting_is_none(side: Side, server: TestServer) -> None:
    use_server(server, max_response_size=None)
    server.route("GET", "/big", Reply(200, body=b"z" * (3 * MIB), chunked=True))
    assert len(side.call("user", "GET", "/big", raw_response=True).content) == 3 * MIB


@pytest.fixture(scope="module")
def uvicorn_bytes() -> Iterator[Uvicorn]:
    server = Uvicorn("tests.asgi_faults:app", clean_env(), lifespan="off")
    yield server
    server.stop()


_PEAK = textwrap.dedent(
    """
    import asyncio, resource, sys, svclink, svclink.sync, svclink.aio
    side, url, query = sys.argv[1:4]
    svclink.configure(service_connections=["user"], service_hosts={"user": url}, response_timeout=60)

    def call(n):
        params = {"n": n, query: 1}
        if side == "sync":
            user = svclink.sync.get_service("user")
            return len(user.http_dispatch("GET", "/bytes", query_params=params, raw_response=True).content)
        async def go():
            user = await svclink.aio.get_service("user")
            response = await user.http_dispatch("GET", "/bytes", query_params=params, raw_response=True)
            return len(response.content)  # not the body: asyncio.run's repr of a result costs 4x its size
        return asyncio.run(go())

    call(1048576)  # imports and first-use allocations out of the way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = call(52428800)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(size, grown * 1024)
    """
)


@pytest.mark.parametrize("query", ["length", "chunked"])
def test_a_50_mib_body_costs_about_its_own_size(side: Side, uvicorn_bytes: Uvicorn, query: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, side.name, uvicorn_bytes.url, query],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    size, grown = map(int, done.stdout.split())
    assert size == 50 * MIB, done.stderr
    assert grown < 1.4 * size, f"peak memory grew by {grown / MIB:.0f} MiB for a 50 MiB body"
