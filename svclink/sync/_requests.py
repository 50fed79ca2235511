"""The requests transport (the sync default): one requests adapter (urllib3 pool) per service and process."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
from urllib3.exceptions import HTTPError, NewConnectionError, ReadTimeoutError

from .._tls import failure_of
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.bodies import CHUNK, Body
from ..core.http.urls import env_proxy
from ..core.settings import Settings
from ..core.tls import TLSPlan
from ._urllib3 import no_response
from .deadline import POOL_CLASSES

#: raised by requests before any I/O, for a URL it cannot send to (as httpx.InvalidURL on the aio side)
_UNSENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
)


def _failure(exc: requests.RequestException) -> TransportFailure:
    """Which kind of transport failure a requests exception is."""
    if isinstance(exc, (requests.ConnectTimeout, *_UNSENDABLE)):
        return TransportFailure.CONNECT
    if isinstance(exc, requests.Timeout):
        return TransportFailure.TIMEOUT
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, ReadTimeoutError):
        return TransportFailure.TIMEOUT
    if isinstance(getattr(reason, "reason", None), NewConnectionError):
        return TransportFailure.CONNECT
    return TransportFailure.RESET


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with svclink's TLS: the service's shared context and the name to check.

    requests would pick the CA bundle itself (certifi, or ``REQUESTS_CA_BUNDLE``) and load it
    into the context on every new connection; here the context, built once from the settings,
    decides alone.
    """

    def __init__(self, tls: ssl.SSLContext | None, server_hostname: str | None, pool_maxsize: int) -> None:
        self._tls_kwargs: dict[str, Any] = {}
        if tls is not None:
            self._tls_kwargs = {"ssl_context": tls, "cert_reqs": tls.verify_mode}
            if server_hostname is not None:
                self._tls_kwargs["server_hostname"] = server_hostname
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, pool_block=True, max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:  # (host_params, pool_kwargs); the stubs' TypedDict lacks server_hostname
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        return host_params, (self._tls_kwargs if host_params["scheme"] == "https" else pool_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Nothing: the pool's context already says what to trust and present."""


class RequestsTransport:
    """Sends planned requests through requests' ``HTTPAdapter`` on svclink's deadline-aware pool.

    The adapter is given each request prepared, not a ``Session``: what a session adds on
    every call (merging its defaults and the environment's settings, hooks, the cookie jar,
    ``.netrc``, redirect bookkeeping) is decided by svclink's core or unwanted between
    services. The proxy, when ``trust_env`` asks for one, is looked up once.
    """

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None:
        self._sends_client_cert = context is not None and tls.config.sends_client_cert
        proxy = env_proxy(base_url) if settings.trust_env else None
        self._proxies = {urlsplit(base_url).scheme: proxy} if proxy else {}
        # the one place this transport's pool is made
        self._adapter = _Adapter(context, tls.server_hostname, settings.pool_maxsize)
        self._adapter.poolmanager.pool_classes_by_scheme = POOL_CLASSES

    def send(self, request: HTTPRequest) -> Answer:
        """One attempt, the body read into a bounded :class:`Body`; a failure before a whole
        response is a :class:`NoResponse` of the right kind."""
        prepared = requests.PreparedRequest()
        try:
            prepared.prepare(request.method, request.url, dict(request.headers), data=request.content)
            response = self._adapter.send(
                prepared,
                stream=True,
                timeout=(request.connect_timeout, request.timeout),
                proxies=self._proxies,
            )
            with response:  # not read to the end (too large, cut off): its connection is closed
                headers = {k.lower(): v for k, v in response.headers.items()}
                status, limit = response.status_code, request.max_response_size
                body = Body.start(request.method, status, headers, limit)
                if body.whole:
                    body.add(response.raw.read(decode_content=True))  # within the bound, as checked
                else:
                    for chunk in response.iter_content(CHUNK):
                        body.add(chunk)
        except requests.RequestException as exc:
            refused = failure_of(exc, self._sends_client_cert)
            raise NoResponse(_failure(exc), type(exc).__name__, refused) from None
        except HTTPError as exc:  # urllib3's own: a full pool, or a body read from the pool's response
            raise no_response(exc, self._sends_client_cert) from None
        return status, response.reason or "", headers, body.value()

    def close(self) -> None:
        self._adapter.close()
