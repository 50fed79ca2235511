"""No response at all: refused, reset, too slow, garbage. Always a svclink exception, at the deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

import svclink

from .conftest import Side, use_server
from .server import Reply, TestServer, closed_port

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
