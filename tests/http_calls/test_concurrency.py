"""Sharing: many threads or tasks on one service, fork, fresh event loops, and closing pools."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import warnings
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync

from ..conftest import Side, use_server
from ..server import Reply, TestServer


def test_concurrent_calls_share_one_bounded_pool(side: Side, server: TestServer) -> None:
    use_server(server, pool_maxsize=10)
    server.route("GET", "/work", Reply(200, {"ok": True}, delay=0.05))
    results = side.call_concurrently(50, "user", "GET", "/work")
    assert results == [{"ok": True}] * 50
    assert len(server.requests) == 50
    assert len({r.peer for r in server.requests}) <= 10


def test_200_concurrent_calls_on_default_limits(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/work", Reply(200, {"ok": True}, delay=0.02))
    results = side.call_concurrently(200, "user", "GET", "/work")
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert results == [{"ok": True}] * 200
    assert len({r.peer for r in user_service.requests}) <= svclink.get_settings().pool_maxsize


def test_connections_are_kept_alive_and_reused(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/a", Reply(200, {}))
    for _ in range(3):
        side.call("user", "GET", "/a")
    assert len({r.peer for r in user_service.requests}) == 1


def test_closing_the_pools_closes_connections_and_later_calls_work(
    side: Side, user_service: TestServer
) -> None:
    user_service.route("GET", "/a", Reply(200, {"n": 1}))
    side.call("user", "GET", "/a")
    side.close_pools()  # svclink.sync.close() / await svclink.aio.aclose()
    assert side.call("user", "GET", "/a") == {"n": 1}
    first, second = user_service.requests
    assert first.peer != second.peer


def test_a_service_block_closes_its_connections(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/a", Reply(200, {"n": 1}))
    assert side.call_in_service_block("user", "GET", "/a") == {"n": 1}  # with / async with service:
    assert side.call_in_service_block("user", "GET", "/a") == {"n": 1}
    assert side.call("user", "GET", "/a") == {"n": 1}
    peers = [r.peer for r in user_service.requests]
    assert len(set(peers)) == 3


def _call_in_a_fresh_process_context(side: Side) -> Any:
    """One call as a forked child or a new program run would make it: a fresh loop (aio) or thread."""
    if side.name == "aio":

        async def call() -> Any:
            user = await svclink.aio.get_service("user")
            return await user.http_dispatch("GET", "/who")

        return asyncio.run(call())
    return svclink.sync.get_service("user").http_dispatch("GET", "/who")


def test_a_forked_child_uses_its_own_connections(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/who", Reply(200, {"ok": True}))
    side.call("user", "GET", "/who")  # the parent now has a pooled connection
    parent_peer = user_service.requests[-1].peer
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only, never return into pytest
        code = 1
        try:
            code = 0 if _call_in_a_fresh_process_context(side) == {"ok": True} else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(user_service.requests) == 2
    assert user_service.requests[1].peer != parent_peer  # the child opened its own connection
    assert side.call("user", "GET", "/who") == {"ok": True}
    assert user_service.requests[2].peer == parent_peer  # and the parent's is still good


def test_the_service_works_from_fresh_event_loops_and_threads(side: Side, user_service: TestServer) -> None:
    """aio: repeated asyncio.run() (as a Celery task does); sync: a new thread each time."""
    user_service.route("GET", "/who", Reply(200, {"ok": True}))
    results: list[Any] = []
    for _ in range(3):
        thread = threading.Thread(target=lambda: results.append(_call_in_a_fresh_process_context(side)))
        thread.start()
        thread.join(10)
    assert results == [{"ok": True}] * 3
    assert side.call("user", "GET", "/who") == {"ok": True}


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
def test_an_aio_service_object_outlives_its_event_loop(user_service: TestServer, transport: str) -> None:
    use_server(user_service, aio_transport=transport)
    user_service.route("GET", "/who", Reply(200, {"ok": True}))

    async def get() -> svclink.aio.Service:
        return await svclink.aio.get_service("user")

    async def call(user: svclink.aio.Service) -> Any:
        return await user.http_dispatch("GET", "/who")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        user = asyncio.run(get())
        assert [asyncio.run(call(user)) for _ in range(3)] == [{"ok": True}] * 3
        gc.collect()
    assert len({r.peer for r in user_service.requests}) == 3  # each loop its own connection
    # each run closed its connections as it ended: none was left for the garbage collector
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_child_forked_while_another_thread_holds_svclink_locks_can_still_call(
    side: Side, user_service: TestServer
) -> None:
    """fork() copies locks as they are: one held by a parent thread must not hang the child."""
    from svclink.core.http.registry import ServiceCache

    user_service.route("GET", "/who", Reply(200, {"ok": True}))
    side.call("user", "GET", "/who")
    if side.name == "sync":
        service: Any = svclink.sync.get_service("user")
        cache: ServiceCache[Any] = svclink.sync.http._services
    else:
        assert side.runner is not None
        service = side.runner.run(svclink.aio.get_service("user"))
        cache = svclink.aio.http._services
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        assert service.guard.breaker is not None and service.guard.budget is not None
        with service.guard.breaker._lock, service.guard.budget._lock, cache._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(10)  # a hang would otherwise outlive the test
                code = 0 if _call_in_a_fresh_process_context(side) == {"ok": True} else 2
            except BaseException:
                code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join(5)
    assert os.waitstatus_to_exitcode(status) == 0
