"""A bare ASGI app for HTTP fault tests, run by uvicorn in its own process.

- ``POST /boom``: answers 500, then raises, as Starlette's (and so FastAPI's)
  ServerErrorMiddleware does after an unhandled error; uvicorn then closes the kept-alive
  connection, which the response did not announce (no ``Connection: close``);
- ``POST /ok``: reads the body and answers ``{"ok": true}``;
- ``GET /bytes?n=N&chunked=1``: a body of N bytes, with a Content-Length unless chunked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    await _body(receive)
    if path == "/boom":
        await _send_json(send, 500, b'{"detail": "Internal Server Error"}')
        raise RuntimeError("an application error")
    if path == "/bytes":
        query = parse_qs(scope["query_string"].decode())
        n, chunked = int(query["n"][0]), "chunked" in query
        headers = [(b"content-type", b"application/octet-stream")]
        if not chunked:
            headers.append((b"content-length", str(n).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        piece = b"x" * 1048576
        while n > 0:
            await send({"type": "http.response.body", "body": piece[:n], "more_body": n > len(piece)})
            n -= len(piece)
        return
    await _send_json(send, 200, b'{"ok": true}')


async def _send_json(send: Any, status: int, data: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
