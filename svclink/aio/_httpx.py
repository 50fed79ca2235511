"""The httpx transport (the aio default): one ``httpx.AsyncHTTPTransport`` per service and loop.

Each attempt goes straight to the transport (httpx's pool over httpcore), not through
``httpx.AsyncClient``: what the client adds on top (merging defaults, cookies, auth,
redirects, event hooks) is either decided by svclink's core or unwanted between services,
and skipping it makes a call as fast as a raw shared ``AsyncClient``'s instead of 10-20 %
slower (``python bench/run.py --only http``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .._tls import failure_of
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse, keep_connection
from ..core.http.bodies import CHUNK, Body
from ..core.http.urls import env_proxy
from ..core.settings import Settings
from ..core.tls import TLSPlan

#: the pool wait ends this long before the attempt's deadline, so that running out of pooled
#: connections is reported as such (not as a timeout of the service)
POOL_MARGIN = 0.02


#: every exception httpx raises: the ones outside RequestError too (InvalidURL, StreamError,
#: ...), so that none reaches a caller unwrapped
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict)


class _Progress:
    """How far an attempt got, from httpcore's trace events: whether it opened a connection
    (else it reused one) and whether the request was written whole (httpcore swallows a
    failed write and reads on, so the failure is only seen later, as a read's)."""

    __slots__ = ("connected", "sending", "sent")

    def __init__(self) -> None:
        self.connected = self.sending = self.sent = False

    @property
    def reused(self) -> bool:
        """The request went out on a connection kept from an earlier one."""
        return self.sending and not self.connected

    async def trace(self, event: str, info: object) -> None:
        if event == "http11.send_request_headers.started":
            self.sending = True
        elif event == "http11.send_request_body.complete":
            self.sent = True
        elif event == "connection.connect_tcp.started":
            self.connected = True


def _failure(exc: Exception, progress: _Progress) -> TransportFailure:
    """Which kind of transport failure an httpx exception is."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return TransportFailure.CONNECT
    if isinstance(exc, httpx.PoolTimeout):
        return TransportFailure.POOL
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure.TIMEOUT
    return TransportFailure.RESET if progress.sent else TransportFailure.NOT_SENT


async def _pieces(content: bytes) -> AsyncIterator[bytes]:
    """A large request body in pieces of :data:`CHUNK` bytes. asyncio takes one large write
    whole into its buffer and, should the connection be lost before that buffer is flushed,
    reports the write as done; written in pieces, the next piece's write fails instead, and
    the attempt is known not to have been sent whole."""
    for start in range(0, len(content), CHUNK):
        yield content[start : start + CHUNK]


def _outgoing(request: HTTPRequest, extensions: dict[str, Any]) -> httpx.Request:
    content, headers = request.content, request.headers
    if content is not None and len(content) > CHUNK:  # with its length: not sent chunked
        headers = {**headers, "Content-Length": str(len(content))}
        return httpx.Request(
            request.method, request.url, headers=headers, content=_pieces(content), extensions=extensions
        )
    return httpx.Request(request.method, request.url, headers=headers, content=content, extensions=extensions)


#: connections per httpcore pool: a pool scans all of its connections (and its queue) each
#: time a request starts or ends, so its cost per request grows with its size; several small
#: pools keep that scan short (see :class:`HttpxTransport`)
POOL_SLICE = 4


class HttpxTransport:
    """Sends planned requests through httpx's connection pools; made and used on one event loop.

    ``pool_maxsize`` connections are split into pools of :data:`POOL_SLICE`. A request goes
    to the first pool with a free connection (so calls one at a time keep reusing one
    connection), else to the least busy pool, to wait there for one of its connections.
    """

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None:
        self._sends_client_cert = context is not None and tls.config.sends_client_cert
        #: httpx's request extension that sets the name sent (SNI) and checked, if not the URL's host
        self._extensions: dict[str, Any] = (
            {"sni_hostname": tls.server_hostname} if tls.server_hostname else {}
        )
        size = settings.pool_maxsize
        self._sizes = [min(POOL_SLICE, size - start) for start in range(0, size, POOL_SLICE)]
        proxy = env_proxy(base_url) if settings.trust_env else None
        if context is None:  # httpx's default (certifi; SSL_CERT_FILE with trust_env), made once for all
            context = httpx.create_ssl_context(trust_env=settings.trust_env)
        self._pools = [self._new_pool(n, context, settings.trust_env, proxy) for n in self._sizes]
        #: requests in flight per pool
        self._busy = [0] * len(self._pools)

    @staticmethod
    def _new_pool(
        size: int, context: ssl.SSLContext, trust_env: bool, proxy: str | None
    ) -> httpx.AsyncHTTPTransport:
        """The one place this transport's pools are made."""
        return httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            verify=context,
            trust_env=trust_env,
            proxy=proxy,
        )

    def _choose(self) -> int:
        """The pool for the next request: the first with a free connection, else the least busy."""
        busy, sizes = self._busy, self._sizes
        for index, count in enumerate(busy):
            if count < sizes[index]:
                return index
        return busy.index(min(busy))

    async def send(self, request: HTTPRequest) -> Answer:
        """One attempt, all of it (pool wait, connect, body) within ``request.timeout``: httpx's
        timeouts bound each step, not their sum."""
        try:
            async with asyncio.timeout(request.timeout):
                return await self._send(request)
        except TimeoutError:
            raise NoResponse(TransportFailure.TIMEOUT, "response too slow") from None

    async def _send(self, request: HTTPRequest) -> Answer:
        """The body read chunk by chunk into a bounded :class:`Body`; a failure before a whole
        response is a :class:`NoResponse` of the right kind."""
        pool_wait = max(0.0, request.timeout - POOL_MARGIN)
        timeout = httpx.Timeout(request.timeout, connect=request.connect_timeout, pool=pool_wait)
        progress = _Progress()
        extensions = {"timeout": timeout.as_dict(), "trace": progress.trace, **self._extensions}
        try:
            outgoing = _outgoing(request, extensions)
        except (httpx.InvalidURL, UnicodeError) as exc:  # a URL httpx cannot send to (idna's errors too)
            raise NoResponse(TransportFailure.CONNECT, type(exc).__name__) from None
        try:
            index = self._choose()
            self._busy[index] += 1
            try:
                response = await self._pools[index].handle_async_request(outgoing)
            except BaseException:
                self._busy[index] -= 1
                raise
            try:
                # httpx's items() are lower-cased, with repeated headers joined as on the sync side
                headers = dict(response.headers.items())
                body = Body.start(request.method, response.status_code, headers, request.max_response_size)
                async for chunk in response.aiter_bytes():
                    body.add(chunk)
                if not keep_connection(response.status_code):
                    await response.extensions["network_stream"].aclose()  # the pool then drops it
            finally:
                self._busy[index] -= 1
                await response.aclose()  # not read to the end (too large, cut off): closes the connection
        except _HTTPX_ERRORS as exc:  # DecodingError too, as on the sync side; and InvalidURL, StreamError...
            refused = failure_of(exc, self._sends_client_cert)
            kind = _failure(exc, progress)
            raise NoResponse(kind, type(exc).__name__, refused, reused=progress.reused) from None
        except ssl.SSLError as exc:  # an alert read after a TLS 1.3 handshake: httpcore lets it through
            refused = failure_of(exc, self._sends_client_cert)
            raise NoResponse(TransportFailure.RESET, type(exc).__name__, refused) from None
        return response.status_code, response.reason_phrase, headers, body.value()

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
