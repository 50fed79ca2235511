"""Fixtures shared by every test: a real HTTP server, settings reset, and the sync/aio sides.

A scenario is written once against :class:`Side` and runs once per side and HTTP
transport: ``side.call(...)`` goes through ``svclink.sync`` over requests or urllib3,
or through ``svclink.aio`` (awaited on a real event loop) over httpx or aiohttp. The
transport is chosen the way a user would, with ``SVCLINK_SYNC_TRANSPORT`` or
``SVCLINK_AIO_TRANSPORT``, so every ``svclink.configure()`` of the test picks it up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync

from .server import TestServer

#: every side and HTTP transport a scenario runs on, as "side-transport"
SIDES = ["sync-requests", "sync-urllib3", "aio-httpx", "aio-aiohttp"]


class Side:
    """One side of svclink over one HTTP transport, driven through the same synchronous-looking calls."""

    def __init__(self, side_id: str) -> None:
        #: "sync-urllib3", say: unique per parametrisation (for names a test must not share)
        self.id = side_id
        #: "sync" or "aio"
        self.name, self.transport = side_id.split("-")
        self.runner = asyncio.Runner() if self.name == "aio" else None

    def call(self, service: str, method: str, endpoint: str, **kwargs: Any) -> Any:
        """``get_service(service).http_dispatch(method, endpoint, **kwargs)`` on this side."""
        if self.runner is None:
            return svclink.sync.get_service(service).http_dispatch(method, endpoint, **kwargs)

        async def call() -> Any:
            user = await svclink.aio.get_service(service)
            return await user.http_dispatch(method, endpoint, **kwargs)

        # the caller's context (a bound request id, say) must reach the task, as with await
        return self.runner.run(call(), context=contextvars.copy_context())

    def call_in_service_block(self, service: str, method: str, endpoint: str, **kwargs: Any) -> Any:
        """One call inside ``with service:`` (sync) or ``async with service:`` (aio)."""
        if self.runner is None:
            with svclink.sync.get_service(service) as user:
                return user.http_dispatch(method, endpoint, **kwargs)

        async def call() -> Any:
            async with await svclink.aio.get_service(service) as user:
                return await user.http_dispatch(method, endpoint, **kwargs)

        return self.runner.run(call(), context=contextvars.copy_context())

    def call_concurrently(self, n: int, service: str, method: str, endpoint: str, **kwargs: Any) -> list[Any]:
        """``n`` calls at once through one service object: threads (sync) or tasks (aio).

        An exception is returned in place of its call's result, so a test sees all of them.
        """
        if self.runner is None:
            user = svclink.sync.get_service(service)

            def one(_: int) -> Any:
                try:
                    return user.http_dispatch(method, endpoint, **kwargs)
                except Exception as exc:
                    return exc

            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                return list(pool.map(one, range(n)))

        async def calls() -> list[Any]:
            user = await svclink.aio.get_service(service)
            coros = [user.http_dispatch(method, endpoint, **kwargs) for _ in range(n)]
            return list(await asyncio.gather(*coros, return_exceptions=True))

        return self.runner.run(calls(), context=contextvars.copy_context())

    def call_timed(
        self, timeouts: list[float], service: str, method: str, endpoint: str
    ) -> list[tuple[Any, float]]:
        """One call per ``response_timeout`` in ``timeouts``, all at once (threads or tasks); for
        each, its result (or the exception it raised) and the seconds it took."""

        def one(timeout: float) -> tuple[Any, float]:
            started = time.monotonic()
            try:
                result = svclink.sync.get_service(service).http_dispatch(
                    method, endpoint, response_timeout=timeout, retry_count=0
                )
            except Exception as exc:
                result = exc
            return result, time.monotonic() - started

        if self.runner is None:
            with concurrent.futures.ThreadPoolExecutor(len(timeouts)) as pool:
                return list(pool.map(one, timeouts))

        async def one_async(timeout: float) -> tuple[Any, float]:
            started = time.monotonic()
            try:
                user = await svclink.aio.get_service(service)
                result = await user.http_dispatch(method, endpoint, response_timeout=timeout, retry_count=0)
            except Exception as exc:
                result = exc
            return result, time.monotonic() - started

        async def calls() -> list[tuple[Any, float]]:
            return list(await asyncio.gather(*(one_async(t) for t in timeouts)))

        return self.runner.run(calls(), context=contextvars.copy_context())

    def close_pools(self) -> None:
        """``svclink.sync.close()`` or ``await svclink.aio.aclose()``; the side stays usable."""
        if self.runner is None:
            svclink.sync.close()
        else:
            self.runner.run(svclink.aio.aclose())

    def close(self) -> None:
        if self.runner is None:
            svclink.sync.close()
        else:
            self.runner.run(svclink.aio.aclose())
            self.runner.close()


@pytest.fixture(params=SIDES)
def side(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Side]:
    s = Side(request.param)
    monkeypatch.setenv(f"SVCLINK_{s.name.upper()}_TRANSPORT", s.transport)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the defaults, with no SVCLINK_* variables from the outside."""
    import os

    for key in list(os.environ):
        if key.startswith("SVCLINK_"):
            monkeypatch.delenv(key)
    svclink.reset()
    yield
    svclink.reset()


@pytest.fixture
def server() -> Iterator[TestServer]:
    s = TestServer().start()
    yield s
    s.stop()


def use_server(server: TestServer, **overrides: Any) -> svclink.Settings:
    """Configure svclink with service ``user`` at ``server``, caller ``api``, and ``overrides``."""
    values: dict[str, Any] = {
        "service_name": "api",
        "service_connections": ["user"],
        "service_hosts": {"user": server.url},
        "response_timeout": 5,
    }
    values.update(overrides)
    return svclink.configure(**values)


@pytest.fixture
def user_service(server: TestServer) -> TestServer:
    """svclink configured with service ``user`` at the test server; returns the server."""
    svclink.configure(
        service_name="api",
        service_connections=["user"],
        service_hosts={"user": server.url},
        response_timeout=5,
    )
    return server
