"""``SvclinkMiddleware(app)``: the Django middleware's behaviour for any ASGI app.

Pure ASGI (no framework imports), so it wraps Starlette, FastAPI or a bare ASGI
callable alike::

    app = SvclinkMiddleware(app)                          # any ASGI app
    app = Starlette(..., middleware=[Middleware(SvclinkMiddleware)])
    app.add_middleware(SvclinkMiddleware)                 # FastAPI / Starlette

For each HTTP request or WebSocket connection it reads the headers through
:func:`svclink.context.incoming`, puts the verdict (:class:`svclink.context.Caller`) in
``scope["svclink"]`` and ``scope["state"]["svclink"]`` (Starlette's
``request.state.svclink``), with the subject of a verified client certificate in its
``tls_subject`` (from the ASGI ``tls`` extension, or the header of a trusted proxy: see
:doc:`/tls`), binds the context while the app runs, and adds
``X-Request-ID`` to the response. In strict mode (``require_signed_context``) an
unverified caller gets a 401 (a WebSocket is closed with code 1008) and the app is
never called. ``lifespan`` and other scopes pass straight through.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs

from ..core import logs
from ..core.context.incoming import Incoming, incoming, log_incoming, rejection
from ..core.context.outgoing import REQUEST_ID_HEADER
from ..core.context.peer import asgi_tls_subject, client_subject
from ..core.context.value import as_user, bind, with_user
from ..core.settings import get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
UserContext = Callable[[Scope], Any]

_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("latin-1")


def default_user_context(scope: Scope) -> str | None:
    """The identity of an authenticated ``scope["user"]`` (Starlette's AuthenticationMiddleware)."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        identity = user.identity
    except (AttributeError, NotImplementedError):
        return None
    return str(identity) if identity not in (None, "") else None


def _headers(scope: Scope) -> dict[str, str]:
    """Header names lower-cased; a repeated header keeps its first value."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


class SvclinkMiddleware:
    """Binds svclink's request context for every HTTP request and WebSocket of an ASGI app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_context: UserContext | None = None,
        require_signed_context: bool | None = None,
    ) -> None:
        """``user_context(scope)`` names the user calls act for (None, an id, (id, claims) or a
        :class:`svclink.context.User`, or an awaitable of one); ``require_signed_context``
        overrides the setting of the same name for this app."""
        self.app = app
        self.user_context = user_context or default_user_context
        self.strict = require_signed_context
        logs.install()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers, settings = _headers(scope), get_settings()
        result = incoming(
            headers,
            settings=settings,
            now=time.monotonic(),
            wall=time.time(),
            strict=self.strict,
        )
        log_incoming(result, "websocket" if scope["type"] == "websocket" else "request")
        if result.rejected:
            await self._reject(scope, send, result)
            return
        client = scope.get("client") or (None,)
        subject = client_subject(settings, verified=asgi_tls_subject(scope), peer=client[0], headers=headers)
        caller = attrs.evolve(result.caller, tls_subject=subject) if subject else result.caller
        scope = dict(scope)
        scope["svclink"] = caller
        state = scope.get("state")
        scope["state"] = state = dict(state) if state is not None else {}
        state["svclink"] = caller
        user = self.user_context(scope)
        if inspect.isawaitable(user):
            user = await user
        with bind(with_user(result.context, as_user(user))) as context:
            await self.app(scope, receive, self._sender(send, context.request_id))

    @staticmethod
    def _sender(send: Send, request_id: str) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(name.lower() == _REQUEST_ID for name, _ in headers):
                    headers.append((_REQUEST_ID, request_id.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        return sender

    @staticmethod
    async def _reject(scope: Scope, send: Send, result: Incoming) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "caller context not verified"})
            return
        status, headers, body = rejection(result)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
