"""A real HTTP/1.1 server on 127.0.0.1 for the tests: scripted replies, every request recorded.

Each route answers with a list of :class:`Reply` values, one per request, the last one
repeated; so "503 then 200" is ``[Reply(503), Reply(200, {...})]``. A reply can delay,
trickle its body, or reset the connection, which is how the tests cause faults for real.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs


@attrs.frozen
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    #: seconds to wait before answering
    delay: float = 0.0
    #: send the body this many bytes at a time, sleeping ``trickle_pause`` between
    trickle: int = 0
    trickle_pause: float = 0.0
    #: read the request, then reset the connection without answering
    reset: bool = False
    #: send the body chunked (Transfer-Encoding), announcing no length
    chunked: bool = False
    #: after answering, close the connection without saying so (no ``Connection: close``),
    #: as uvicorn does after an application error
    close_after: bool = False


@attrs.frozen
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    #: the client's port: requests on one kept-alive connection share it
    peer: int = 0
    #: when the request arrived (time.monotonic())
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    def parts(self) -> dict[str, Part]:
        """The parts of a multipart/form-data body, by field name."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        assert message.is_multipart(), "not a multipart body"
        found = {}
        for part in message.iter_parts():
            assert isinstance(part, email.message.EmailMessage)
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            content = part.get_payload(decode=True)
            ctype = part.get("content-type")
            found[str(name)] = Part(filename, content, ctype)
        return found


@attrs.frozen
class Part:
    """One part of a multipart body: ``filename`` and ``content_type`` are None for a plain field."""

    filename: str | None
    content: bytes
    content_type: str | None


Responder = Callable[[Recorded], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the listen backlog: tests open hundreds of connections at once
    #: server-side TLS: each accepted connection's handshake runs on its own handler thread
    tls: ssl.SSLContext | None = None
    #: TLS handshakes attempted, and the client certificates of those that succeeded
    handshakes = 0
    client_certs: list[dict[str, Any]]

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            self.handshakes += 1
            request = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):  # a refused handshake is what the TLS tests cause
                _close_gracefully(request)
                return
            self.client_certs.append(request.getpeercert() or {})
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout, a reset) is what fault tests cause: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _close_gracefully(sock: ssl.SSLSocket) -> None:
    """After a refused handshake (OpenSSL has sent its alert): send FIN and read what the client
    sent meanwhile, as a web server does, so that the client reads the alert instead of a reset."""
    raw = socket.socket(fileno=sock.detach())
    try:
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(2)
        while raw.recv(65536):
            pass
    except OSError:
        pass
    finally:
        raw.close()


class TestServer:
    """Start with :meth:`start`; ``url`` is its base URL; ``requests`` what it received."""

    __test__ = False  # not a pytest class

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.routes: dict[tuple[str, str], list[Reply] | Responder] = {}
        self.requests: list[Recorded] = []
        self.hits: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def route(self, method: str, path: str, *replies: Reply | Responder) -> None:
        """Answer ``method path`` with ``replies`` in turn (the last repeats), or a callable."""
        if len(replies) == 1 and callable(replies[0]):
            self.routes[(method, path)] = replies[0]
        else:
            self.routes[(method, path)] = list(replies)  # type: ignore[arg-type]

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    @property
    def url(self) -> str:
        assert self._server is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_port}"

    @property
    def handshakes(self) -> int:
        """TLS handshakes attempted by clients (a TLS server only)."""
        assert self._server is not None
        return self._server.handshakes

    @property
    def client_certs(self) -> list[dict[str, Any]]:
        """The verified client certificates (``getpeercert()``) of successful handshakes."""
        assert self._server is not None
        return self._server.client_certs

    def start(self, port: int = 0) -> TestServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    peer=self.client_address[1],
                    at=time.monotonic(),
                )
                key = (self.command, parts.path)
                with outer.lock:
                    outer.requests.append(rec)
                    n = outer.hits.get(key, 0)
                    outer.hits[key] = n + 1
                    script = outer.routes.get(key)
                if script is None:
                    reply = Reply(404, {"detail": "Not found."})
                elif callable(script):
                    reply = script(rec)
                else:
                    reply = script[min(n, len(script) - 1)]
                self._reply(reply)

            def _reply(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if reply.body is not None:
                    payload = reply.body
                    ctype = "text/plain; charset=utf-8"
                elif reply.json is not None:
                    payload = json.dumps(reply.json).encode()
                    ctype = "application/json"
                else:
                    payload, ctype = b"", ""
                self.send_response(reply.status)
                if ctype and "Content-Type" not in reply.headers:
                    self.send_header("Content-Type", ctype)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if reply.chunked:
                    for i in range(0, len(payload), 65536):
                        piece = payload[i : i + 65536]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                elif reply.trickle:
                    for i in range(0, len(payload), reply.trickle):
                        self.wfile.write(payload[i : i + reply.trickle])
                        self.wfile.flush()
                        time.sleep(reply.trickle_pause)
                elif self.command != "HEAD":
                    self.wfile.write(payload)
                if reply.close_after:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        server = _Server(("127.0.0.1", port), Handler)
        server.tls, server.client_certs = self.tls, []
        self._server = server
        # a short poll interval: stop() returns at once instead of after half a second
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
