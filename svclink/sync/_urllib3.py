"""The urllib3 transport: urllib3's connection pool driven directly, without requests' session.

requests' per-call machinery (preparing a ``Request``, merging session settings, hooks,
cookie extraction) costs more than the pool it sits on; this transport hands the planned
request straight to a ``urllib3.PoolManager``, which is all a call between services needs.
"""

from __future__ import annotations

import ssl
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)

from .._tls import failure_of
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.bodies import CHUNK, Body
from ..core.http.urls import env_proxy
from ..core.settings import Settings
from ..core.tls import TLSPlan
from .deadline import POOL_CLASSES

#: urllib3 neither retries nor follows redirects (core decides both); one shared value, as
#: ``retries=False`` would have urllib3 build a ``Retry`` for it twice on every request
NO_RETRIES = urllib3.Retry(total=False, redirect=False)


def _failure(exc: HTTPError) -> TransportFailure:
    """Which kind of transport failure a urllib3 exception is."""
    if isinstance(exc, ConnectTimeoutError | NewConnectionError | NameResolutionError | ProxyError):
        return TransportFailure.CONNECT
    if isinstance(exc, ReadTimeoutError):
        return TransportFailure.TIMEOUT
    return TransportFailure.RESET


def no_response(exc: HTTPError, sends_client_cert: bool) -> NoResponse:
    """What a urllib3 exception says about the attempt (raised through requests too)."""
    if isinstance(exc, EmptyPoolError):  # every pooled connection stayed busy until the deadline
        return NoResponse(TransportFailure.POOL, "no free connection in the pool")
    return NoResponse(_failure(exc), type(exc).__name__, failure_of(exc, sends_client_cert))


class Urllib3Transport:
    """Sends planned requests through one ``urllib3.PoolManager`` on svclink's deadline-aware pool."""

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None:
        self._sends_client_cert = context is not None and tls.config.sends_client_cert
        options: dict[str, Any] = {"maxsize": settings.pool_maxsize, "block": True, "retries": False}
        if context is not None:  # the service's shared context alone says what to trust and present
            options.update(ssl_context=context, cert_reqs=context.verify_mode)
            if tls.server_hostname is not None:
                options["server_hostname"] = tls.server_hostname
        proxy = env_proxy(base_url) if settings.trust_env else None
        # the one place this transport's pool is made
        pool = (
            urllib3.ProxyManager(proxy, num_pools=4, **options)
            if proxy
            else urllib3.PoolManager(num_pools=4, **options)
        )
        pool.pool_classes_by_scheme = POOL_CLASSES
        self._pool = pool

    def send(self, request: HTTPRequest) -> Answer:
        """One attempt, the body read chunk by chunk into a bounded :class:`Body`; a failure
        before a whole response is a :class:`NoResponse` of the right kind."""
        timeout = urllib3.Timeout(connect=request.connect_timeout, read=request.timeout)
        try:
            response = self._pool.urlopen(
                request.method,
                request.url,
                body=request.content,
                headers=request.headers,
                timeout=timeout,
                redirect=False,
                retries=NO_RETRIES,
                preload_content=False,
            )
            try:
                found = response.headers
                headers = {k.lower(): v for k, v in found.itermerged()}  # repeated ones joined by urllib3
                status, limit = response.status, request.max_response_size
                body = Body.start(request.method, status, headers, limit)
                if body.whole:
                    body.add(response.read())  # within the bound, as Body.start checked
                else:
                    for chunk in response.stream(CHUNK):
                        body.add(chunk)
            except BaseException:  # not read to the end (too large, cut off): the connection is closed
                response.close()
                raise
            finally:
                response.release_conn()
        except HTTPError as exc:
            raise no_response(exc, self._sends_client_cert) from None
        return status, response.reason or "", headers, body.value()

    def close(self) -> None:
        self._pool.clear()
