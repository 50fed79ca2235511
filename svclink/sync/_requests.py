"""The requests transport (the sync default): one ``requests.Session`` per service and process."""

from __future__ import annotations

import ssl
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
import requests.adapters
from urllib3.exceptions import EmptyPoolError, NewConnectionError, ReadTimeoutError

from .._tls import failure_of
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.bodies import CHUNK, Body
from ..core.settings import Settings
from ..core.tls import TLSPlan
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


def _as_planned(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A session ``auth`` that leaves the request as it is: with one set, requests does not put
    ``.netrc`` credentials over the ``Authorization`` header svclink's core decided on."""
    return request


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
    """Sends planned requests through a ``requests.Session`` on svclink's deadline-aware pool."""

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None:
        self._sends_client_cert = context is not None and tls.config.sends_client_cert
        session = requests.Session()  # the one place this transport's pool is made
        session.trust_env = settings.trust_env  # no proxies unless asked
        if settings.trust_env:  # only then would requests read .netrc itself, on every request
            session.auth = _as_planned
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # stateless, thread-safe
        adapter = _Adapter(context, tls.server_hostname, settings.pool_maxsize)
        adapter.poolmanager.pool_classes_by_scheme = POOL_CLASSES
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def send(self, request: HTTPRequest) -> Answer:
        """One attempt, the body read chunk by chunk into a bounded :class:`Body`; a failure
        before a whole response is a :class:`NoResponse` of the right kind."""
        try:
            response = self._session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.content,
                timeout=(request.connect_timeout, request.timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:  # not read to the end (too large, cut off): its connection is closed
                headers = {k.lower(): v for k, v in response.headers.items()}
                body = Body.start(request.method, response.status_code, headers, request.max_response_size)
                for chunk in response.iter_content(CHUNK):
                    body.add(chunk)
        except requests.RequestException as exc:
            refused = failure_of(exc, self._sends_client_cert)
            raise NoResponse(_failure(exc), type(exc).__name__, refused) from None
        except EmptyPoolError:  # every pooled connection stayed busy until the deadline
            raise NoResponse(TransportFailure.POOL, "no free connection in the pool") from None
        return response.status_code, response.reason or "", headers, body.value()

    def close(self) -> None:
        self._session.close()
