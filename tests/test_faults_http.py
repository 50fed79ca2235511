"""Issue 5, HTTP faults caused for real through a misbehaving TCP proxy on 127.0.0.1.

Each case runs against the sync and the aio side; each is bounded in time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

import svclink
import svclink.aio
from svclink import BreakerPolicy, BudgetPolicy, RetryPolicy

from .conftest import Side
from .faultproxy import FaultProxy
from .server import Reply, TestServer


@pytest.fixture
def proxy(server: TestServer) -> Iterator[FaultProxy]:
    p = FaultProxy(int(server.url.rsplit(":", 1)[1]))
    yield p
    p.close()


def configure_via(proxy: FaultProxy, **extra: object) -> None:
    svclink.configure(
        service_name="api", service_connections=["user"], service_hosts={"user": proxy.url}, **extra
    )


def test_trickled_response_fails_at_the_deadline(side: Side, server: TestServer, proxy: FaultProxy) -> None:
    """1. One byte every 50 ms never trips a per-read timeout; the call's deadline still holds."""
    server.route("GET", "/slow", Reply(200, {"data": "x" * 400}))
    proxy.mode, proxy.trickle, proxy.pause = "trickle", 1, 0.05
    configure_via(proxy, retry=RetryPolicy(total=0))
    started = time.monotonic()
    with pytest.raises(svclink.ServiceTimeout) as info:
        side.call("user", "GET", "/slow", response_timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5, elapsed  # the whole response would take ~25 s
    assert info.value.service == "user" and info.value.endpoint == "/slow"


@pytest.mark.parametrize("key", [None, "order-42"])
def test_post_reset_after_body_sent_retried_only_with_key(
    side: Side, server: TestServer, proxy: FaultProxy, key: str | None
) -> None:
    """2. The server got the body and the connection reset: a retry could act twice."""
    server.route("POST", "/orders", Reply(reset=True), Reply(201, {"id": 1}))
    configure_via(proxy)
    if key is None:
        with pytest.raises(svclink.ServiceUnavailable):
            side.call("user", "POST", "/orders", payload={"n": 1})
        assert len(server.calls("POST", "/orders")) == 1
    else:
        assert side.call("user", "POST", "/orders", payload={"n": 1}, idempotency_key=key) == {"id": 1}
        calls = server.calls("POST", "/orders")
        assert len(calls) == 2
        assert {c.headers["idempotency-key"] for c in calls} == {key}
        assert all(c.json() == {"n": 1} for c in calls)


def test_503_storm_budget_and_breaker(side: Side, server: TestServer) -> None:
    """3. Everything fails: attempts stay within 1 + budget of the calls; the breaker opens,
    probes, and closes when the dependency recovers."""
    healthy = threading.Event()

    def answer(_req: object) -> Reply:
        return Reply(200, {"ok": True}) if healthy.is_set() else Reply(503, {"detail": "down"})

    server.route("GET", "/x", answer)
    svclink.configure(
        service_connections=["user"],
        service_hosts={"user": server.url},
        retry=RetryPolicy(total=3, backoff_factor=0.001, backoff_max=0.002),
        retry_budget=BudgetPolicy(ratio=0.2, min_retries=5),
        circuit_breaker=BreakerPolicy(failure_threshold=1000, reset_timeout=0.3),
    )
    calls = 100
    for _ in range(calls):
        with pytest.raises(svclink.ServerError):
            side.call("user", "GET", "/x")
    attempts = len(server.calls("GET", "/x"))
    assert calls < attempts <= calls * 1.2 + 5, attempts  # not calls * (1 + 3)

    # now the breaker: a low threshold opens it; calls then fail fast without reaching the server
    svclink.configure(
        service_connections=["user"],
        service_hosts={"user": server.url},
        retry=RetryPolicy(total=0),
        circuit_breaker=BreakerPolicy(failure_threshold=5, reset_timeout=0.3),
    )
    server.requests.clear()
    for _ in range(5):
        with pytest.raises(svclink.ServerError):
            side.call("user", "GET", "/x")
    for _ in range(20):
        with pytest.raises(svclink.CircuitOpen):
            side.call("user", "GET", "/x")
    assert len(server.calls("GET", "/x")) == 5
    healthy.set()
    time.sleep(0.35)
    assert side.call("user", "GET", "/x") == {"ok": True}  # the probe closes it
    assert side.call("user", "GET", "/x") == {"ok": True}
    assert len(server.calls("GET", "/x")) == 7


def test_black_holed_dependency_fails_at_deadline_without_piling_up(side: Side, proxy: FaultProxy) -> None:
    """4. Connections are accepted and never answered: every call ends at its deadline."""
    proxy.mode = "blackhole"
    configure_via(proxy, retry=RetryPolicy(total=0), response_timeout=0.5)
    before = threading.active_count()
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(svclink.ServiceTimeout):
            side.call("user", "GET", "/anything")
    assert time.monotonic() - started < 3.0
    assert threading.active_count() <= before + 3  # proxy threads only, nothing of svclink's piling up


def test_pool_exhaustion_fails_at_the_deadline_and_is_not_held_against_the_service(
    side: Side, server: TestServer
) -> None:
    """All pooled connections busy: the call waits until its deadline, then ServiceTimeout;
    the dependency did nothing wrong, so its breaker stays closed."""
    server.route("GET", "/slow", Reply(200, {"ok": True}, delay=1.5))
    server.route("GET", "/fast", Reply(200, {"ok": True}))
    svclink.configure(
        service_connections=["user"],
        service_hosts={"user": server.url},
        pool_maxsize=1,
        retry=RetryPolicy(total=0),
        circuit_breaker=BreakerPolicy(failure_threshold=1),
    )
    if side.name == "sync":
        busy = threading.Thread(target=side.call, args=("user", "GET", "/slow"))
        busy.start()
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(svclink.ServiceTimeout, match="pool"):
            side.call("user", "GET", "/fast", response_timeout=0.5)
        elapsed = time.monotonic() - started
        busy.join(5)
    else:

        async def scenario() -> float:
            user = await svclink.aio.get_service("user")
            slow = asyncio.ensure_future(user.http_dispatch("GET", "/slow"))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(svclink.ServiceTimeout, match="pool"):
                await user.http_dispatch("GET", "/fast", response_timeout=0.5)
            elapsed = time.monotonic() - started
            await slow
            return elapsed

        assert side.runner is not None
        elapsed = side.runner.run(scenario())
    assert 0.4 <= elapsed < 1.2, elapsed
    assert server.calls("GET", "/fast") == []
    assert side.call("user", "GET", "/fast") == {"ok": True}  # breaker still closed
