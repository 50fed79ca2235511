"""The demo's HTTP half: a small user service on 127.0.0.1 in a thread, and the calls made
to it from both sides."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from .steps import astep, step

_USER_RE = re.compile(r"^/api/v1/users/(\d+)$")


class _UserService(BaseHTTPRequestHandler):
    """A toy user service: users 1 and 2 exist; /flaky fails once with 503, then answers."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes
    users: ClassVar[dict[int, dict[str, Any]]] = {}
    flaky_hits = 0
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("X-Request-ID", self.headers.get("X-Request-ID", ""))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        match = _USER_RE.match(path)
        if match:
            user = self.users.get(int(match.group(1)))
            if user is None:
                self._send(404, {"detail": "No such user.", "code": "user_not_found"})
            else:
                self._send(200, user)
        elif path == "/api/v1/flaky":
            with self.lock:
                type(self).flaky_hits += 1
                first = self.flaky_hits % 2 == 1
            if first:
                self._send(503, {"detail": "warming up"}, {"Retry-After": "0"})
            else:
                self._send(200, {"ok": True, "attempt": 2})
        else:
            self._send(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.lock:
            new_id = max(self.users, default=0) + 1
            self.users[new_id] = {"id": new_id, "name": body.get("name", "")}
        self._send(201, self.users[new_id])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: the aio step opens 20 connections at once


@contextmanager
def user_service() -> Iterator[str]:
    """Run the toy user service on a free port of 127.0.0.1; yields its base URL."""
    _UserService.users = {1: {"id": 1, "name": "ada"}, 2: {"id": 2, "name": "grace"}}
    server = _Server(("127.0.0.1", 0), _UserService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def sync_calls(out: Callable[[str], None]) -> None:
    import svclink.sync

    user = svclink.sync.get_service("user")
    step("GET /api/v1/users/1", lambda: user.http_dispatch(
        "GET", "/api/v1/users/{id}", path_params={"id": 1}), out)  # fmt: skip
    step("POST /api/v1/users/", lambda: user.http_dispatch(
        "POST", "/api/v1/users/", payload={"name": "linus"}, include_status_code=True), out)  # fmt: skip
    step("GET /api/v1/flaky (503, retried)", lambda: user.http_dispatch("GET", "/api/v1/flaky"), out)
    step("GET /api/v1/users/404", lambda: user.http_dispatch(
        "GET", "/api/v1/users/{id}", path_params={"id": 404}), out)  # fmt: skip


async def aio_calls(out: Callable[[str], None]) -> None:
    import svclink.aio

    async with await svclink.aio.get_service("user") as user:
        await astep("GET /api/v1/users/2", lambda: user.http_dispatch(
            "GET", "/api/v1/users/{id}", path_params={"id": 2}), out)  # fmt: skip
        await astep("GET /api/v1/flaky (503, retried)", lambda: user.http_dispatch(
            "GET", "/api/v1/flaky"), out)  # fmt: skip
        await astep("GET /api/v1/users/404", lambda: user.http_dispatch(
            "GET", "/api/v1/users/{id}", path_params={"id": 404}), out)  # fmt: skip

        async def twenty() -> str:
            calls = [user.http_dispatch("GET", "/api/v1/users/1") for _ in range(20)]
            return f"{len(await asyncio.gather(*calls))} answers"

        await astep("20 concurrent GETs, one pool", twenty, out)
