"""Service B of the tests: ASGI apps behind svclink's middleware, run by uvicorn in its own process.

Configured from ``SVCLINK_*`` variables (service name ``b``, calling ``c``). Paths:

- ``/bare/...``: a bare ASGI app under ``SvclinkMiddleware``;
- ``/strict/...``: the same app under ``SvclinkMiddleware(require_signed_context=True)``;
- ``/starlette/...``: a Starlette app with Starlette's AuthenticationMiddleware (a user
  named by ``X-Test-User``) and then ``SvclinkMiddleware``.

``.../echo`` answers what the middleware bound, ``.../call-c`` also calls service C and
``/bare/publish`` publishes an event. With ``SVCLINK_TEST_QUEUE`` set, the app's lifespan
runs an aio event consumer on that queue whose handler calls C at ``/from-consumer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import svclink
import svclink.aio
from svclink.context import current
from svclink.contrib.asgi import Receive, Scope, Send, SvclinkMiddleware

svclink.configure()


def seen(caller: Any) -> dict[str, Any]:
    context = current()
    assert context is not None
    return {
        "verified": caller.verified,
        "caller": caller.service,
        "caller_user": caller.user_id,
        "reason": caller.reason,
        "tls_subject": caller.tls_subject,
        "request_id": context.request_id,
        "user_id": context.user_id,
        "deadline_ms": None
        if context.deadline is None
        else round((context.deadline - time.monotonic()) * 1000),
        "traceparent": context.traceparent,
    }


async def call_c(path: str) -> Any:
    c = await svclink.aio.get_service("c")
    try:
        return await c.http_dispatch("GET", path)
    except svclink.ServiceTimeout:
        return "timeout"


async def send_json(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app: no framework at all."""
    path = scope["path"].split("/", 2)[-1]
    body = seen(scope["svclink"])
    if path == "call-c":
        body["c"] = await call_c("/from-b")
    elif path == "publish":
        publisher = await svclink.aio.get_publisher()
        await publisher.publish("order.created", {"order": 1}, exchange=os.environ["SVCLINK_TEST_EXCHANGE"])
    elif path != "echo":
        await send_json(send, 404, {"detail": "Not found."})
        return
    await send_json(send, 200, body)


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        name = conn.headers.get("x-test-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


async def starlette_echo(request: Request) -> JSONResponse:
    body = seen(request.state.svclink)
    if request.path_params["action"] == "call-c":
        body["c"] = await call_c("/from-b")
    return JSONResponse(body)


starlette_app = Starlette(
    routes=[Route("/starlette/{action}", starlette_echo)],
    middleware=[Middleware(AuthenticationMiddleware, backend=HeaderAuth()), Middleware(SvclinkMiddleware)],
)
lenient = SvclinkMiddleware(bare)
strict = SvclinkMiddleware(bare, require_signed_context=True)


@contextlib.asynccontextmanager
async def consumer() -> AsyncIterator[None]:
    """An aio event consumer whose handler calls C, for the end-to-end test."""
    queue = os.environ.get("SVCLINK_TEST_QUEUE")
    if not queue:
        yield
        return
    events = svclink.aio.EventConsumer(
        queue, exchange=os.environ["SVCLINK_TEST_EXCHANGE"], bindings=["order.*"]
    )

    @events.on("order.created")
    async def handle(event: Any) -> None:
        c = await svclink.aio.get_service("c")
        await c.http_dispatch("GET", "/from-consumer")

    task = asyncio.create_task(events.run())
    try:
        yield
    finally:
        events.stop()
        await task


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        async with consumer():
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope.get("path", "")
    if path.startswith("/strict/"):
        await strict(scope, receive, send)
    elif path.startswith("/starlette/"):
        await starlette_app(scope, receive, send)
    else:
        await lenient(scope, receive, send)
