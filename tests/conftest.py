"""Fixtures shared by every test: a real HTTP server, settings reset, and the sync/aio sides.

A scenario is written once against :class:`Side` and runs twice: ``side.call(...)``
goes through ``svclink.sync`` on one run and through ``svclink.aio`` (awaited on a
real event loop) on the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync

from .server import TestServer


class Side:
    """One side of svclink, driven through the same synchronous-looking calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.runner = asyncio.Runner() if name == "aio" else None

    def call(self, service: str, method: str, endpoint: str, **kwargs: Any) -> Any:
        """``get_service(service).http_dispatch(method, endpoint, **kwargs)`` on this side."""
        if self.runner is None:
            return svclink.sync.get_service(service).http_dispatch(method, endpoint, **kwargs)

        async def call() -> Any:
            user = await svclink.aio.get_service(service)
            return await user.http_dispatch(method, endpoint, **kwargs)

        return self.runner.run(call())

    def close(self) -> None:
        if self.runner is None:
            svclink.sync.close()
        else:
            self.runner.run(svclink.aio.aclose())
            self.runner.close()


@pytest.fixture(params=["sync", "aio"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    s = Side(request.param)
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
