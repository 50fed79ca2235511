"""No exception of an HTTP library reaches the caller: what each could raise, tried for real.

httpx raises more than ``httpx.RequestError``: ``InvalidURL`` (and the ``idna`` package's
own errors) for a host it cannot encode, and h11's ``LocalProtocolError`` came through
unwrapped for a request whose framing headers contradicted its body. Each is now decided
before any I/O, the same on both sides: a host no transport can send to is a
ConfigurationError at configure time, a framing header an InvalidRequest. The aio driver
wraps every httpx exception (``HTTPError``, ``InvalidURL``, ``StreamError``,
``CookieConflict``) that could still arise, and the sync driver requests' counterparts.
"""

from __future__ import annotations

import pytest

import svclink

from ..conftest import Side
from ..server import Reply, TestServer

#: hosts httpx refuses while building the request (InvalidURL, idna.IDNAError) and
#: requests would look up in DNS or refuse in its own way
UNSENDABLE_HOSTS = [
    "http://1.2.3.256:8000",  # httpx: InvalidURL (an IPv4 octet over 255)
    "http://\u2603.net",  # httpx: InvalidURL (IDNA 2008 refuses it); requests: InvalidURL
    "http://xn--abc:8000",  # httpx: idna.InvalidCodepoint (a UnicodeError, not even httpx's)
    "http://xn--ls8h.la",  # httpx: idna.InvalidCodepoint (an emoji host)
    "http://xn--zz-:8000",  # httpx: idna.IDNAError
]


@pytest.mark.parametrize("host", UNSENDABLE_HOSTS)
def test_a_host_no_transport_can_send_to_is_refused_at_configure_time(host: str) -> None:
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure(service_connections=["user"], service_hosts={"user": host})
    assert info.value.field == "service_hosts['user']"


@pytest.mark.parametrize(
    "host", ["http://xn--fiqs8s.example:8000", "http://\u00fcn\u00ef.example", "http://svc_a:8000"]
)
def test_valid_international_and_underscored_hosts_are_accepted(host: str) -> None:
    svclink.configure(service_connections=["user"], service_hosts={"user": host})


@pytest.mark.parametrize(
    "headers",
    [{"Content-Length": "5"}, {"content-length": "999"}, {"Transfer-Encoding": "chunked"}],
    ids=["short-length", "long-length", "chunked"],
)
def test_a_framing_header_is_refused_before_any_io(
    side: Side, user_service: TestServer, headers: dict[str, str]
) -> None:
    """It used to reach the wire: requests replaced the length, httpx sent it and h11's
    LocalProtocolError reached the caller; Transfer-Encoding went out beside a
    Content-Length on both sides, a request smuggling pattern."""
    user_service.route("POST", "/x", Reply(200, {}))
    with pytest.raises(svclink.InvalidRequest, match=next(iter(headers))):
        side.call("user", "POST", "/x", payload={"a": 1}, headers=headers)
    assert user_service.requests == []


def test_an_undecodable_body_is_service_unavailable_not_a_decoding_error(
    side: Side, user_service: TestServer
) -> None:
    """httpx.DecodingError and requests' ContentDecodingError: the same svclink exception."""
    user_service.route(
        "GET", "/zip", Reply(200, body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    )
    with pytest.raises(svclink.ServiceUnavailable) as info:
        side.call("user", "GET", "/zip", retry_count=0)
    _no_library_exception(info.value)


def _no_library_exception(exc: BaseException) -> None:
    """Neither the exception nor anything chained to it comes from requests, urllib3, httpx,
    httpcore, h11 or idna."""
    seen: BaseException | None = exc
    while seen is not None:
        module = type(seen).__module__.split(".")[0]
        assert module not in {"requests", "urllib3", "httpx", "httpcore", "h11", "idna"}, repr(seen)
        seen = seen.__cause__ or seen.__context__
