"""One attempt as a driver sees it: the request to send, and how it reports what happened.

This is the whole contract between the call flow and a transport (requests, urllib3,
httpx, aiohttp): send :class:`HTTPRequest` as it is, return an :data:`Answer` or raise
:class:`NoResponse` (or :class:`~.bodies.TooLarge`), and after a response ask
:func:`keep_connection` whether its connection may go back to the pool.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..errors import TLSFailure, TransportFailure
from .multipart import FileSpec


class NoResponse(Exception):
    """Raised by a driver's send (or a test stub) when no response arrived: says which kind,
    and for a refused TLS handshake, what the refusal was.

    ``reused`` says the connection had carried an earlier request: a kept-alive connection
    the server closed while it sat in the pool fails this way, which says nothing about
    the service's health (see :func:`counts_for_breaker`).
    """

    def __init__(
        self, kind: TransportFailure, detail: str, tls: TLSFailure | None = None, *, reused: bool = False
    ) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.tls, self.reused = kind, detail, tls, reused


def counts_for_breaker(kind: TransportFailure, reused: bool) -> bool:
    """Whether a failure with no response counts toward the service's circuit breaker.

    Not a full pool (a local limit), and not a connection that was kept alive from an
    earlier request and broke before any response: servers close idle and errored
    connections at will, so that is the pool's news, not the service's.
    """
    if kind is TransportFailure.POOL:
        return False
    return not (reused and kind in (TransportFailure.RESET, TransportFailure.NOT_SENT))


def keep_connection(status: int) -> bool:
    """Whether the connection that carried a response with ``status`` may be reused.

    Not after a 5xx: servers (uvicorn after an application error, proxies after a failed
    upstream) often close that connection a moment after answering, without saying so,
    and the next request sent on it would fail for no fault of the service.
    """
    return status < 500


#: (status, reason, headers with lower-case names, body): what a driver's send returns
Answer = tuple[int, str, dict[str, str], bytes]


@attrs.frozen
class HTTPRequest:
    """One attempt, ready for a driver to send exactly as it is."""

    method: str
    url: str
    headers: Mapping[str, str]
    #: the encoded body (JSON or multipart, its Content-Type in ``headers``), or None; the
    #: bytes every driver sends as they are
    content: bytes | None
    #: what a multipart ``content`` holds, for in-process stubs; drivers send ``content``
    form: Mapping[str, str] | None
    files: Mapping[str, FileSpec] | None
    connect_timeout: float
    #: the time this attempt may take in all (reads included): the call's remaining budget
    timeout: float
    #: read no more than this many bytes of the body (see :class:`~.bodies.Body`); None: no bound
    max_response_size: int | None = None
