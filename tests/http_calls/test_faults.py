"""No response at all: refused, reset, too slow, garbage. Always a svclink exception, at the deadline."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import svclink
import svclink.aio
from svclink import BreakerPolicy, BudgetPolicy, RetryPolicy

from ..conftest import Side, use_server
from ..faultproxy import FaultProxy
from ..server import Reply, TestServer, closed_port

NO_RETRY = svclink.RetryPolicy(total=0)


def timed(side: Side, *args: object, **kwargs: object) -> tuple[BaseException, float]:
    """Make a call that must fail; the exception and how long the call took."""
    started = time.monotonic()
    with pytest.raises(svclink.APIException) as info:
        side.call(*args, **kwargs)  # type: ignore[arg-type]
    return info.value, time.monotonic() - started


def test_connection_refused_is_service_unavailable(side: Side) -> None:
    port = closed_port()
    svclink.configure(service_connections=["user"], service_hosts={"user": f"http://127.0.0.1:{port}"})
    err, took = timed(side, "user", "POST", "/x", payload={})
    assert type(err) is svclink.ServiceUnavailable
    assert "could not connect after 3 attempts" in str(err)  # nothing was sent: even POST is retried
    assert (err.service, err.method, err.endpoint, err.status_code) == ("user", "POST", "/x", None)
    assert took < 5


def test_a_name_that_does_not_resolve_is_service_unavailable(side: Side) -> None:
    svclink.configure(
        service_connections=["user"], service_hosts={"user": "http://svclink-nowhere.invalid"}, retry=NO_RETRY
    )
    err, _ = timed(side, "user", "GET", "/x")
    assert type(err) is svclink.ServiceUnavailable


def test_a_reset_connection_is_retried_for_get(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/r", Reply(reset=True), Reply(200, {"ok": True}))
    assert side.call("user", "GET", "/r") == {"ok": True}
    assert len(user_service.requests) == 2


def test_a_reset_connection_is_service_unavailable(side: Side, user_service: TestServer) -> None:
    user_service.route("POST", "/r", Reply(reset=True))
    user_service.route("GET", "/r", Reply(reset=True))
    err, _ = timed(side, "user", "POST", "/r", payload={})
    assert type(err) is svclink.ServiceUnavailable
    assert len(user_service.calls("POST", "/r")) == 1  # the POST may have been processed: not retried
    err, _ = timed(side, "user", "GET", "/r")
    assert type(err) is svclink.ServiceUnavailable
    assert len(user_service.calls("GET", "/r")) == 3


def test_a_slow_server_times_out_at_the_deadline(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=0.5)
    server.route("GET", "/slow", Reply(200, {"late": True}, delay=3))
    err, took = timed(side, "user", "GET", "/slow")
    assert type(err) is svclink.ServiceTimeout
    assert err.status_code is None
    assert 0.45 <= took < 2.0  # at the deadline, not when the server (3 s) answers
    assert len(server.requests) == 1  # no time was left for a retry


def test_calls_in_flight_together_each_time_out_at_their_own_deadline(
    side: Side, user_service: TestServer
) -> None:
    """Twenty calls at once to a server that answers after 3 s, with four different
    timeouts (aio: one loop timer for all of them): each fails at its own."""
    user_service.route("GET", "/slow", Reply(200, {"late": True}, delay=3))
    timeouts = [0.2, 0.5, 0.8, 1.1] * 5
    results = side.call_timed(timeouts, "user", "GET", "/slow")
    for timeout, (result, took) in zip(timeouts, results, strict=True):
        assert type(result) is svclink.ServiceTimeout, result
        assert timeout - 0.05 <= took < timeout + 0.4, (timeout, took)


def test_a_per_call_response_timeout(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/slow", Reply(200, {"late": True}, delay=3))
    err, took = timed(side, "user", "GET", "/slow", response_timeout=0.5)
    assert type(err) is svclink.ServiceTimeout
    assert took < 2.0


def test_a_trickling_body_times_out_at_the_deadline(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=0.5)
    server.route("GET", "/drip", Reply(200, body=b"x" * 200, trickle=1, trickle_pause=0.02))
    err, took = timed(side, "user", "GET", "/drip")
    assert type(err) is svclink.ServiceTimeout
    assert took < 2.0


def test_a_body_that_stalls_times_out_at_the_deadline(side: Side, server: TestServer) -> None:
    use_server(server, response_timeout=0.5)
    server.route("GET", "/stall", Reply(200, body=b"y" * 20, trickle=10, trickle_pause=3))
    err, took = timed(side, "user", "GET", "/stall")
    assert type(err) is svclink.ServiceTimeout
    assert took < 2.0


def test_a_corrupt_compressed_body_is_wrapped(side: Side, server: TestServer) -> None:
    use_server(server, retry=NO_RETRY)
    server.route("GET", "/gz", Reply(200, body=b"not gzip", headers={"Content-Encoding": "gzip"}))
    err, _ = timed(side, "user", "GET", "/gz")
    assert type(err) is svclink.ServiceUnavailable


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP server that answers every connection with bytes that are not HTTP."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield port
    stop.set()
    listener.close()


def test_a_response_that_is_not_http_is_wrapped(side: Side, garbage_server: int) -> None:
    svclink.configure(
        service_connections=["user"],
        service_hosts={"user": f"http://127.0.0.1:{garbage_server}"},
        retry=NO_RETRY,
    )
    err, _ = timed(side, "user", "GET", "/x")
    assert type(err) is svclink.ServiceUnavailable


def test_propagate_error_false_still_raises_when_nothing_came_back(side: Side) -> None:
    svclink.configure(
        service_connections=["user"],
        service_hosts={"user": f"http://127.0.0.1:{closed_port()}"},
        retry=NO_RETRY,
    )
    err, _ = timed(side, "user", "GET", "/x", propagate_error=False)
    assert type(err) is svclink.ServiceUnavailable


def test_the_service_works_again_after_faults(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/r", Reply(reset=True), Reply(200, {"back": True}))
    err, _ = timed(side, "user", "GET", "/r", retry_count=0)
    assert type(err) is svclink.ServiceUnavailable
    assert side.call("user", "GET", "/r", retry_count=0) == {"back": True}


# Faults caused for real through a misbehaving TCP proxy on 127.0.0.1.


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


@pytest.mark.parametrize("side", ["aio-httpx", "aio-aiohttp"], indirect=True)
def test_a_call_whose_wait_for_a_connection_outlasted_its_deadline_still_ends_at_it(
    side: Side, server: TestServer
) -> None:
    """A call that got its pooled connection only after its deadline (the event loop was held
    up meanwhile, by blocking code in another task) fails at once with ServiceTimeout instead
    of waiting for a response with no time limit. (Sync threads cannot be held up this way.)"""
    server.route("GET", "/held", Reply(200, {"ok": True}, delay=0.5))
    server.route("GET", "/slow", Reply(200, {"ok": True}, delay=6))
    svclink.configure(
        service_connections=["user"],
        service_hosts={"user": server.url},
        pool_maxsize=1,
        retry=RetryPolicy(total=0),
    )

    async def scenario() -> float:
        user = await svclink.aio.get_service("user")

        async def hold_then_block() -> None:
            await user.http_dispatch("GET", "/held")
            time.sleep(1.5)  # blocking code: the loop runs nothing else meanwhile

        holder = asyncio.ensure_future(hold_then_block())
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(svclink.ServiceTimeout):
            await user.http_dispatch("GET", "/slow", response_timeout=1.0)
        elapsed = time.monotonic() - started
        await holder
        return elapsed

    assert side.runner is not None
    assert side.runner.run(scenario()) < 3.0
