"""HTTP calls over httpx's connection pool: the async send loop and nothing else.

Each attempt goes straight to an ``httpx.AsyncHTTPTransport`` (httpx's pool over
httpcore), not through ``httpx.AsyncClient``: what the client adds on top (merging
defaults, cookies, auth, redirects, event hooks) is either decided by svclink's core
or unwanted between services, and skipping it makes a call as fast as a raw shared
``AsyncClient``'s instead of 10-20 % slower (``python bench/run.py --only http``).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from .._tls import failure_of, http_context
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse, keep_connection
from ..core.http.bodies import Body, TooLarge
from ..core.http.calls import Call, Done, Retry
from ..core.http.registry import ServiceCache, stubs
from ..core.http.service import BaseService
from ..core.settings import Settings
from ._loops import close_with_loop

_POOL_MARGIN = 0.02


#: every exception httpx raises: the ones outside RequestError too (InvalidURL, StreamError,
#: ...), so that none reaches a caller unwrapped
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict)


def _failure(exc: Exception, progress: _Progress) -> TransportFailure:
    """Which kind of transport failure an httpx exception is."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return TransportFailure.CONNECT
    if isinstance(exc, httpx.PoolTimeout):
        return TransportFailure.POOL
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure.TIMEOUT
    return TransportFailure.RESET if progress.sent else TransportFailure.NOT_SENT


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


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None if ``NO_PROXY`` covers its host.

    Read with the standard library's rules, as requests reads them on the sync side.
    """
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.netloc):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


_LoopPool = tuple[httpx.AsyncHTTPTransport, AsyncGenerator[None, None]]


class Service(BaseService):
    """A declared service, called from asyncio: one httpx connection pool per event loop.

    A pool belongs to the loop that made it, so each loop gets its own; that is what
    lets code call services from repeated ``asyncio.run()`` (as a Celery task does).
    """

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        #: built (or found) once: a certificate file that cannot be read fails here, not on a call
        self._tls = http_context(settings, name, self.base_url)
        #: httpx's request extension that sets the name sent (SNI) and checked, if not the URL's host
        self._extensions = {"sni_hostname": self.tls.server_hostname} if self.tls.server_hostname else {}
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )

    async def _pool(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is not None:  # its closer runs as the loop shuts down, for good
            return entry[0]
        for old in [lp for lp in self._pools if lp.is_closed()]:
            del self._pools[old]  # a loop closed without shutting down its async generators
        size, trust_env = self.settings.pool_maxsize, self.settings.trust_env
        pool = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            verify=self._tls if self._tls is not None else True,
            trust_env=trust_env,
            proxy=_env_proxy(self.base_url) if trust_env else None,
        )
        closer = await close_with_loop(pool.aclose)  # closed cleanly at the end of asyncio.run()
        self._pools[loop] = (pool, closer)
        return pool

    async def aclose(self) -> None:
        """Close this loop's pooled connections; the next call opens new ones."""
        entry = self._pools.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()

    async def __aenter__(self) -> Service:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def http_dispatch(
        self,
        method: str,
        endpoint: str,
        *,
        query_params: Mapping[str, Any] | None = None,
        path_params: Mapping[str, Any] | None = None,
        payload: Any = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        propagate_error: bool | None = None,
        include_status_code: bool = False,
        response_timeout: float | None = None,
        retry_count: int | None = None,
        idempotency_key: str | None = None,
        raw_response: bool = False,
        max_response_size: int | None = None,
    ) -> Any:
        """Call ``endpoint`` of this service and return the decoded JSON body.

        See :doc:`/http` for every argument; the sync twin takes the same ones.
        """
        plan = self.plan(
            method,
            endpoint,
            query_params=query_params,
            path_params=path_params,
            payload=payload,
            files=files,
            headers=headers,
            propagate_error=propagate_error,
            include_status_code=include_status_code,
            response_timeout=response_timeout,
            retry_count=retry_count,
            idempotency_key=idempotency_key,
            raw_response=raw_response,
            max_response_size=max_response_size,
            wall=time.time(),
        )
        call = Call.start(plan, time.monotonic(), self.guard)
        while True:
            request = call.request(time.monotonic())
            step: Retry | Done
            failure: NoResponse | TooLarge | None = None
            try:
                stub = stubs.get(self.name)
                answer = stub(request) if stub is not None else await self._send(request)
            except (NoResponse, TooLarge) as exc:
                failure = exc
            # outside the except block: the error raised carries no chained transport exception,
            # whose text (the URL and its query string) svclink does not control
            if isinstance(failure, TooLarge):
                call.oversized(failure, time.monotonic())
            if isinstance(failure, NoResponse):
                now, rand = time.monotonic(), random.random()
                step = call.failed(
                    failure.kind, failure.detail, now, rand, failure.tls, reused=failure.reused
                )
            else:
                status, reason, response_headers, body = answer
                step = call.received(
                    status, reason, response_headers, body,
                    now=time.monotonic(), wall=time.time(), rand=random.random(),
                )  # fmt: skip
            if isinstance(step, Done):
                return step.value
            await asyncio.sleep(step.wait)

    async def _send(self, request: HTTPRequest) -> Answer:
        """Perform one attempt, all of it (pool wait, connect, body) under its time budget, the
        body chunk by chunk into a bounded :class:`Body`."""
        # the pool wait ends a moment before the attempt's own deadline, so that running out of
        # pooled connections is reported as such (not a timeout of the service)
        pool_wait = max(0.0, request.timeout - _POOL_MARGIN)
        timeout = httpx.Timeout(request.timeout, connect=request.connect_timeout, pool=pool_wait)
        progress = _Progress()
        try:
            outgoing = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                extensions={"timeout": timeout.as_dict(), "trace": progress.trace, **self._extensions},
            )
            async with asyncio.timeout(request.timeout):
                response = await (await self._pool()).handle_async_request(outgoing)
                try:
                    # httpx's items() are lower-cased, with repeated headers joined as on the sync side
                    headers = dict(response.headers.items())
                    body = Body.start(
                        request.method, response.status_code, headers, request.max_response_size
                    )
                    async for chunk in response.aiter_bytes():
                        body.add(chunk)
                    if not keep_connection(response.status_code):
                        await response.extensions["network_stream"].aclose()  # the pool then drops it
                finally:
                    await response.aclose()  # not read to the end (too large, cut off): closes the connection
        except TimeoutError:
            raise NoResponse(TransportFailure.TIMEOUT, "response too slow") from None
        except _HTTPX_ERRORS as exc:  # DecodingError too, as on the sync side; and InvalidURL, StreamError...
            tls = failure_of(exc, self.tls.config.sends_client_cert) if self._tls else None
            kind = _failure(exc, progress)
            raise NoResponse(kind, type(exc).__name__, tls, reused=progress.reused) from None
        except ssl.SSLError as exc:  # an alert read after a TLS 1.3 handshake: httpcore lets it through
            tls = failure_of(exc, self.tls.config.sends_client_cert)
            raise NoResponse(TransportFailure.RESET, type(exc).__name__, tls) from None
        return response.status_code, response.reason_phrase, headers, body.value()


_services: ServiceCache[Service] = ServiceCache(Service)


async def get_service(name: str) -> Service:
    """The service object for ``name``, created once per settings and shared by all tasks."""
    return _services.get(name)


async def aclose() -> None:
    """Close every service's connections on the running loop (they reopen on the next call)."""
    for service in _services.drain():
        await service.aclose()
