"""HTTP calls over httpx or aiohttp (``aio_transport``): the async send loop and nothing else."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

from .._tls import http_context
from ..core.errors import ConfigurationError
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.bodies import TooLarge
from ..core.http.calls import Call, Done
from ..core.http.registry import ServiceCache, stubs
from ..core.http.service import BaseService
from ..core.settings import Settings
from ..core.tls import TLSPlan
from ._httpx import HttpxTransport
from ._loops import close_with_loop


class Transport(Protocol):
    """What the send loop needs from an HTTP library: one attempt sent as planned, then closed.

    Made on, and used only from, one event loop. ``send`` returns the whole response or
    raises :class:`NoResponse` with the kind of failure (and what a refused TLS handshake
    was); it never follows redirects or retries (core decides those). It bounds the attempt
    as a whole (pool wait, connect, body) by ``request.timeout``, with its library's own
    timer where that covers the whole (one timer per attempt, as the raw library sets),
    and raises ``NoResponse(TIMEOUT)`` past it. ``context`` is the service's shared TLS
    context (None for http://), ``tls`` the name its certificate must carry.
    """

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None: ...

    async def send(self, request: HTTPRequest) -> Answer: ...

    async def aclose(self) -> None: ...


def transport_class(name: str) -> type[Transport]:
    """The transport called ``name``; aiohttp is imported only when a service uses it."""
    if name == "httpx":
        return HttpxTransport
    try:
        from ._aiohttp import AiohttpTransport
    except ImportError:
        raise ConfigurationError(
            "aio_transport", "'aiohttp' needs aiohttp installed: pip install 'svclink[aiohttp]'"
        ) from None
    return AiohttpTransport


_LoopPool = tuple[Transport, AsyncGenerator[None, None]]


class Service(BaseService):
    """A declared service, called from asyncio: one connection pool per event loop.

    A pool belongs to the loop that made it, so each loop gets its own; that is what
    lets code call services from repeated ``asyncio.run()`` (as a Celery task does).
    """

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        #: the HTTP library that carries this service's calls ("httpx" or "aiohttp")
        self.transport = settings.aio_transport_of(name)
        self._transport_class = transport_class(self.transport)
        #: built (or found) once: a certificate file that cannot be read fails here, not on a call
        self._tls = http_context(settings, name, self.base_url)
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )

    async def _pool(self) -> Transport:
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is not None:  # its closer runs as the loop shuts down, for good
            return entry[0]
        for old in [lp for lp in self._pools if lp.is_closed()]:
            del self._pools[old]  # a loop closed without shutting down its async generators
        pool = self._transport_class(self.settings, self.base_url, self._tls, self.tls)
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
        with self.traced(method, endpoint):
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
                stub = stubs.get(self.name)
                result: Answer | NoResponse | TooLarge
                try:
                    result = stub(request) if stub is not None else await self._send(request)
                except (NoResponse, TooLarge) as exc:
                    result = exc
                step = call.outcome(result, now=time.monotonic(), wall=time.time(), rand=random.random())
                if isinstance(step, Done):
                    return step.value
                await asyncio.sleep(step.wait)

    async def _send(self, request: HTTPRequest) -> Answer:
        """Perform one attempt on this loop's pool (the transport bounds it as a whole)."""
        entry = self._pools.get(asyncio.get_running_loop())
        pool = entry[0] if entry is not None else await self._pool()
        return await pool.send(request)


_services: ServiceCache[Service] = ServiceCache(Service)


async def get_service(name: str) -> Service:
    """The service object for ``name``, created once per settings and shared by all tasks."""
    return _services.get(name)


async def aclose() -> None:
    """Close every service's connections on the running loop (they reopen on the next call)."""
    for service in _services.drain():
        await service.aclose()
