"""HTTP calls over requests or urllib3 (``sync_transport``): the send loop and nothing else."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Mapping
from typing import Any, Protocol

from .._tls import http_context
from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.bodies import TooLarge
from ..core.http.calls import Call, Done
from ..core.http.registry import ServiceCache, stubs
from ..core.http.service import BaseService
from ..core.locks import ForkSafeLock, generation
from ..core.settings import Settings
from ..core.tls import TLSPlan
from ._requests import RequestsTransport
from ._urllib3 import Urllib3Transport
from .deadline import Attempt


class Transport(Protocol):
    """What the send loop needs from an HTTP library: one attempt sent as planned, then closed.

    ``send`` returns the whole response or raises :class:`NoResponse` with the kind of
    failure (and what a refused TLS handshake was); it never follows redirects or retries
    (core decides those). A transport's connections go through ``deadline.POOL_CLASSES``,
    so every attempt is bounded as a whole. ``context`` is the service's shared TLS context
    (None for http://), ``tls`` the name its certificate must carry.
    """

    def __init__(
        self, settings: Settings, base_url: str, context: ssl.SSLContext | None, tls: TLSPlan
    ) -> None: ...

    def send(self, request: HTTPRequest) -> Answer: ...

    def close(self) -> None: ...


TRANSPORTS: dict[str, type[Transport]] = {"requests": RequestsTransport, "urllib3": Urllib3Transport}


class Service(BaseService):
    """A declared service, called synchronously; safe to share between threads and across fork."""

    def __init__(self, name: str, settings: Settings) -> None:
        super().__init__(name, settings)
        #: the HTTP library that carries this service's calls ("requests" or "urllib3")
        self.transport = settings.sync_transport_of(name)
        self._transport_class = TRANSPORTS[self.transport]
        #: built (or found) once: a certificate file that cannot be read fails here, not on a call
        self._tls = http_context(settings, name, self.base_url)
        self._lock = ForkSafeLock()
        self._transport: Transport | None = None
        #: the process (see :func:`~svclink.core.locks.generation`) the transport was made in
        self._made_in = -1

    def _pool(self) -> Transport:
        """This process's transport: a forked child never reuses its parent's sockets."""
        transport, current = self._transport, generation()
        if transport is None or self._made_in != current:
            with self._lock:
                if self._transport is None or self._made_in != current:
                    self._transport = self._transport_class(self.settings, self.base_url, self._tls, self.tls)
                    self._made_in = current
                transport = self._transport
        return transport

    def close(self) -> None:
        """Close this process's pooled connections; the next call opens new ones."""
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None and self._made_in == generation():
            transport.close()

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
                    result = stub(request) if stub is not None else self._send(request)
                except (NoResponse, TooLarge) as exc:
                    result = exc
                step = call.outcome(result, now=time.monotonic(), wall=time.time(), rand=random.random())
                if isinstance(step, Done):
                    return step.value
                time.sleep(step.wait)

    def _send(self, request: HTTPRequest) -> Answer:
        """Perform one attempt; headers and body are read under the attempt's whole time budget.

        The pool's connections note how far the attempt got (see :mod:`.deadline`), which the
        transport's exception does not say: a broken connection is ``NOT_SENT`` if the request
        was not written whole, and ``reused`` if the connection had carried an earlier one.
        """
        with Attempt(request.timeout) as attempt:
            try:
                answer = self._pool().send(request)
            except NoResponse as exc:
                if exc.kind is TransportFailure.POOL:  # no connection: nothing else to say
                    raise
                if not attempt.expired:  # a failure after the cut-off is the cut-off
                    kind = exc.kind
                    if kind is TransportFailure.RESET and not attempt.sent:
                        kind = TransportFailure.NOT_SENT
                    raise NoResponse(kind, exc.detail, exc.tls, reused=attempt.reused) from None
        if attempt.expired:  # whatever was read after the cut-off is not a response
            raise NoResponse(TransportFailure.TIMEOUT, "response too slow")
        return answer


_services: ServiceCache[Service] = ServiceCache(Service)


def get_service(name: str) -> Service:
    """The service object for ``name``, created once per settings and shared by all threads."""
    return _services.get(name)


def close() -> None:
    """Close every service's pooled connections (they reopen on the next call)."""
    for service in _services.drain():
        service.close()
