"""The aiohttp transport (``svclink[aiohttp]``): one ``aiohttp.ClientSession`` per service and loop.

aiohttp's client spends a fraction of httpx's CPU on a call (a seventh, one at a time, in
``python bench/run.py --only sweep``) and keeps it flat as calls in flight grow. The
session is used only as a connection pool: no cookies, no redirects, no environment (core
decides proxies and credentials), no timeouts but the connect one.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .._tls import failure_of
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse, keep_connection
from ..core.http.bodies import CHUNK, Body
from ..core.http.urls import env_proxy
from ..core.settings import Settings
from ..core.tls import TLSPlan
from ._httpx import POOL_MARGIN


def _failure(exc: aiohttp.ClientError) -> TransportFailure:
    """Which kind of transport failure an aiohttp exception is."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return TransportFailure.CONNECT
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return TransportFailure.TIMEOUT
    return TransportFailure.RESET


class _Pieces:
    """A large request body written in pieces of :data:`CHUNK` bytes, noting when the last
    one was taken. asyncio takes one large write whole into its buffer and reports it done
    even if the connection is lost before the buffer is flushed; in pieces, a failure comes
    before the last one is taken, and the attempt is known not to have been sent whole."""

    def __init__(self, content: bytes) -> None:
        self.content, self.taken = content, False

    async def iterate(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.content), CHUNK):
            yield self.content[start : start + CHUNK]
        self.taken = True


#: set when this task's attempt opened a new connection (else it reused a pooled one)
_connected: contextvars.ContextVar[bool] = contextvars.ContextVar("svclink_aiohttp_connected", default=False)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, noting in the calling task that a new connection was opened: a
    broken connection kept from an earlier request says nothing about the service's health."""

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        _connected.set(True)
        return await super()._create_connection(req, traces, timeout)


def _drop_connection(response: aiohttp.ClientResponse) -> None:
    """Have the response's connection closed instead of pooled. aiohttp has already pooled
    it when the whole body came with the head (it releases it at the body's end, before the
    response is returned; no other task ran since), so its protocol is reached directly."""
    protocol = response._protocol
    if protocol is None:
        return
    if response.connection is None:  # already back in the pool: closed there, dropped on next use
        protocol.close()
    else:
        protocol.force_close()  # closed when released


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The response's headers with lower-case names, repeated ones joined as on the sync side."""
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class AiohttpTransport:
    """Sends planned requests through an aiohttp session; made and used on one event loop.

    At most ``pool_maxsize`` requests hold a connection at once: the limit is a semaphore
    here rather than aiohttp's own, whose wait cannot be told apart from a slow connect.
    """

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None:
        self._sends_client_cert = context is not None and tls.config.sends_client_cert
        self._server_hostname = tls.server_hostname
        self._proxy = env_proxy(base_url) if settings.trust_env else None
        self._slots = asyncio.Semaphore(settings.pool_maxsize)
        # the one place this transport's pool is made
        self._session = aiohttp.ClientSession(
            # the service's shared context alone says what to trust and present
            connector=_Connector(limit=0, ssl=context if context is not None else True),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        # aiohttp resends an idempotent request once when a reused connection drops it; whether
        # to try again is core's decision (it counts attempts and honours the deadline). There is
        # no public switch: aiohttp's own test client turns it off the same way.
        self._session._retry_connection = False

    async def send(self, request: HTTPRequest) -> Answer:
        """One attempt, all of it within ``request.timeout``; a failure before a response is a
        :class:`NoResponse` of the right kind."""
        slots, timeout = self._slots, request.timeout
        if slots.locked():  # every connection busy: wait for one, but not past the deadline
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                async with asyncio.timeout(max(0.0, timeout - POOL_MARGIN)):
                    await slots.acquire()
            except TimeoutError:
                raise NoResponse(TransportFailure.POOL, "no free connection in the pool") from None
            timeout = deadline - loop.time()
            if timeout <= 0:  # the loop was held up meanwhile; aiohttp reads total <= 0 as no limit
                slots.release()
                raise NoResponse(TransportFailure.TIMEOUT, "response too slow")
        else:
            await slots.acquire()
        _connected.set(False)
        content, headers = request.content, request.headers
        data: bytes | AsyncIterator[bytes] | None = content
        pieces = None
        if content is not None and len(content) > CHUNK:  # with its length: not sent chunked
            pieces = _Pieces(content)
            headers, data = {**headers, "Content-Length": str(len(content))}, pieces.iterate()
        try:
            async with self._session.request(
                request.method,
                request.url,
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=self._proxy,
                server_hostname=self._server_hostname,
                # aiohttp's own timer bounds the whole attempt, body included (as raw aiohttp's
                # default one does: no second timer), to the exact deadline (never rounded up)
                timeout=aiohttp.ClientTimeout(
                    total=timeout, sock_connect=request.connect_timeout, ceil_threshold=math.inf
                ),
            ) as response:
                answer_headers = _headers(response)
                status, limit = response.status, request.max_response_size
                if not keep_connection(status):
                    _drop_connection(response)
                body = Body.start(request.method, status, answer_headers, limit)
                if body.whole:
                    body.add(await response.read())  # within the bound, as Body.start checked
                else:
                    async for chunk in response.content.iter_any():
                        body.add(chunk)
        except aiohttp.ClientConnectorCertificateError as exc:  # an ssl error class without its fields
            refused = failure_of(exc.certificate_error, self._sends_client_cert)
            raise NoResponse(TransportFailure.CONNECT, type(exc).__name__, refused) from None
        except aiohttp.ClientError as exc:
            refused = failure_of(exc, self._sends_client_cert)
            kind, reused = _failure(exc), not _connected.get()
            if kind is TransportFailure.RESET and pieces is not None and not pieces.taken:
                kind = TransportFailure.NOT_SENT
            raise NoResponse(kind, type(exc).__name__, refused, reused=reused) from None
        except ssl.SSLError as exc:  # an alert read after a TLS 1.3 handshake
            refused = failure_of(exc, self._sends_client_cert)
            raise NoResponse(TransportFailure.RESET, type(exc).__name__, refused) from None
        except TimeoutError:  # the attempt's whole time ran out (aiohttp's total timeout)
            raise NoResponse(TransportFailure.TIMEOUT, "response too slow") from None
        finally:
            slots.release()
        return status, response.reason or "", answer_headers, body.value()

    async def aclose(self) -> None:
        await self._session.close()
