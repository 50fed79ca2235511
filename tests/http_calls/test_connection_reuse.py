"""Pooled connections that servers close: no failure a healthy service did not cause.

- uvicorn (under Starlette's error handling, as in FastAPI) answers 500 and then closes
  the kept-alive connection without saying so; the next call sent on it used to fail
  and count toward the breaker. A connection that carried a 5xx is no longer reused.
- A kept-alive connection that breaks before any response byte is not counted by the
  circuit breaker: servers close idle connections at will.
- A request whose write failed never reached the server whole, so it is retried for
  any method, a POST without an idempotency key included.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

import svclink
from svclink import BreakerPolicy, RetryPolicy

from ..conftest import Side, use_server
from ..server import Reply, TestServer
from ..services import Uvicorn, clean_env


@pytest.fixture(scope="module")
def uvicorn_faults() -> Iterator[Uvicorn]:
    server = Uvicorn("tests.asgi_faults:app", clean_env(), lifespan="off")
    yield server
    server.stop()


def test_a_500_that_uvicorn_follows_by_closing_breaks_no_later_call(
    side: Side, uvicorn_faults: Uvicorn
) -> None:
    svclink.configure(service_connections=["user"], service_hosts={"user": uvicorn_faults.url})
    failures = []
    for _ in range(20):
        with pytest.raises(svclink.ServerError):
            side.call("user", "POST", "/boom", payload={})
        try:
            assert side.call("user", "POST", "/ok", payload={"n": 1}) == {"ok": True}
        except svclink.APIException as exc:
            failures.append(exc)
    assert failures == []


def test_a_kept_alive_connection_broken_before_a_response_is_not_held_against_the_service(
    side: Side, server: TestServer
) -> None:
    use_server(server, circuit_breaker=BreakerPolicy(failure_threshold=1), retry=RetryPolicy(total=0))
    server.route("GET", "/a", Reply(200, {"ok": True}))
    server.route("POST", "/b", Reply(reset=True))
    assert side.call("user", "GET", "/a") == {"ok": True}
    with pytest.raises(svclink.ServiceUnavailable, match="before a response"):
        side.call("user", "POST", "/b", payload={})  # on the connection GET /a left in the pool
    assert side.call("user", "GET", "/a") == {"ok": True}  # the breaker is still closed
    first, second, _ = server.requests
    assert first.peer == second.peer


def test_a_fresh_connection_broken_before_a_response_still_counts(side: Side, server: TestServer) -> None:
    use_server(server, circuit_breaker=BreakerPolicy(failure_threshold=1), retry=RetryPolicy(total=0))
    server.route("POST", "/b", Reply(reset=True))
    with pytest.raises(svclink.ServiceUnavailable):
        side.call("user", "POST", "/b", payload={})
    with pytest.raises(svclink.CircuitOpen):
        side.call("user", "POST", "/b", payload={})


class ResetsFirstRequest:
    """A raw HTTP server: the first connection is reset as soon as the request's head is
    read, while the client is still writing its body; later ones are answered 200."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.bodies: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, self.connections), daemon=True).start()

    def _handle(self, conn: socket.socket, n: int) -> None:
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            if n == 1:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed with a reset: the client's write fails
            head, _, body = head.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            while len(body) < length:
                body += conn.recv(1 << 20)
            self.bodies.append(len(body))
            conn.sendall(
                b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
            )

    def stop(self) -> None:
        self.listener.close()


def test_a_request_whose_write_failed_is_retried_even_for_a_post(side: Side) -> None:
    server = ResetsFirstRequest()
    try:
        svclink.configure(service_connections=["user"], service_hosts={"user": server.url})
        payload = {"blob": "x" * (20 * 1024 * 1024)}  # more than the socket buffers hold
        assert side.call("user", "POST", "/upload", payload=payload) == {"ok": True}
        assert server.connections == 2 and len(server.bodies) == 1
    finally:
        server.stop()
