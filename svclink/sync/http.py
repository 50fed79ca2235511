"""HTTP calls over requests and urllib3's connection pool: the send loop and nothing else."""

from __future__ import annotations

import os
import random
import ssl
import time
from collections.abc import Mapping
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
import requests.adapters
from urllib3.exceptions import EmptyPoolError, NewConnectionError, ReadTimeoutError

from .._tls import failure_of, http_context
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.bodies import CHUNK, Body, TooLarge
from ..core.http.calls import Call, Done, Retry
from ..core.http.registry import ServiceCache, stubs
from ..core.http.service import BaseService
from ..core.locks import ForkSafeLock
from ..core.settings import Settings
from ..core.tls import TLSPlan
from .deadline import POOL_CLASSES, attempt_deadline


def _failure(exc: requests.RequestException, sent: bool) -> TransportFailure:
    """Which kind of transport failure a requests exception is; ``sent``: the request was written whole."""
    if isinstance(exc, requests.ConnectTimeout):
        return TransportFailure.CONNECT
    if isinstance(exc, requests.Timeout):
        return TransportFailure.TIMEOUT
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, ReadTimeoutError):
        return TransportFailure.TIMEOUT
    if isinstance(getattr(reason, "reason", None), NewConnectionError):
        return TransportFailure.CONNECT
    return TransportFailure.RESET if sent else TransportFailure.NOT_SENT


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


def _new_session(settings: Settings, tls: ssl.SSLContext | None, plan: TLSPlan) -> requests.Session:
    session = requests.Session()
    session.trust_env = settings.trust_env  # no proxies unless asked
    if settings.trust_env:  # only then would requests read .netrc itself, on every request
        session.auth = _as_planned
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # stateless, thread-safe
    adapter = _Adapter(tls, plan.server_hostname, settings.pool_maxsize)
    adapter.poolmanager.pool_classes_by_scheme = POOL_CLASSES
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Service(BaseService):
    """A declared service, called synchronously; safe to share between threads and across fork."""

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        #: built (or found) once: a certificate file that cannot be read fails here, not on a call
        self._tls = http_context(settings, name, self.base_url)
        self._lock = ForkSafeLock()
        self._session: requests.Session | None = None
        self._pid = 0

    def _pool(self) -> requests.Session:
        """This process's session: a forked child never reuses its parent's sockets."""
        session, pid = self._session, os.getpid()
        if session is None or self._pid != pid:
            with self._lock:
                if self._session is None or self._pid != pid:
                    self._session, self._pid = _new_session(self.settings, self._tls, self.tls), pid
                session = self._session
        return session

    def close(self) -> None:
        """Close this process's pooled connections; the next call opens new ones."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None and self._pid == os.getpid():
            session.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def http_dispatch(
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

        See :doc:`/http` for every argument; the aio twin takes the same ones.
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
                answer = stub(request) if stub is not None else self._send(request)
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
            time.sleep(step.wait)

    def _send(self, request: HTTPRequest) -> Answer:
        """Perform one attempt; headers and body are read under the attempt's whole time budget,
        the body chunk by chunk into a bounded :class:`Body`."""
        with attempt_deadline(request.timeout) as attempt:
            try:
                response = self._pool().request(
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
                    body = Body.start(
                        request.method, response.status_code, headers, request.max_response_size
                    )
                    for chunk in response.iter_content(CHUNK):
                        body.add(chunk)
            except requests.RequestException as exc:
                if not attempt.expired:
                    tls = failure_of(exc, self.tls.config.sends_client_cert) if self._tls else None
                    kind = _failure(exc, attempt.sent)
                    raise NoResponse(kind, type(exc).__name__, tls, reused=attempt.reused) from None
            except EmptyPoolError:  # every pooled connection stayed busy until the deadline
                raise NoResponse(TransportFailure.POOL, "no free connection in the pool") from None
        if attempt.expired:  # whatever was read after the cut-off is not a response
            raise NoResponse(TransportFailure.TIMEOUT, "response too slow")
        return response.status_code, response.reason or "", headers, body.value()


_services: ServiceCache[Service] = ServiceCache(Service)


def get_service(name: str) -> Service:
    """The service object for ``name``, created once per settings and shared by all threads."""
    return _services.get(name)


def close() -> None:
    """Close every service's pooled connections (they reopen on the next call)."""
    for service in _services.drain():
        service.close()
