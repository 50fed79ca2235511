"""The verified client certificate of an incoming request: who the TLS layer says called.

A server that terminates TLS itself hands the ASGI app the subject of a client
certificate it verified (the ASGI ``tls`` extension). Behind a proxy that terminates
mutual TLS, the proxy forwards the subject in a header; that header is believed only
when ``tls_client_subject_header`` names it and the request comes from an address in
``tls_trusted_proxies``: anyone else could send the header too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..settings import Settings

_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: a subject longer than this is not one (RFC 4514 names of real certificates are far shorter)
MAX_SUBJECT = 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def subject_header(value: object) -> str | None:
    """The header a trusted proxy puts the verified client certificate's subject in, lower-cased."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise ConfigurationError("tls_client_subject_header", "must be an HTTP header name")
    return value.lower()


def trusted_proxies(value: object) -> tuple[Network, ...]:
    """Addresses or networks (``10.0.0.0/8``) of the proxies whose subject header is believed."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigurationError("tls_trusted_proxies", "must be a list of IP addresses or networks")
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(str(item) if not isinstance(item, Network) else item))
        except ValueError:
            raise ConfigurationError(
                "tls_trusted_proxies", f"{item!r} is not an IP address or network (host bits set?)"
            ) from None
    return tuple(networks)


def check_proxy_settings(header: str | None, proxies: tuple[Network, ...]) -> None:
    """A header without proxies to believe it from would never be read; proxies without a header
    would trust nothing: both are mistakes worth a start-up error."""
    if header is not None and not proxies:
        raise ConfigurationError(
            "tls_client_subject_header", "is believed only from tls_trusted_proxies, which lists none"
        )
    if proxies and header is None:
        raise ConfigurationError("tls_trusted_proxies", "trust no header: set tls_client_subject_header")


def _clean(subject: object) -> str | None:
    if not isinstance(subject, str):
        return None
    subject = subject.strip()
    if not subject or len(subject) > MAX_SUBJECT or _CONTROL_RE.search(subject):
        return None
    return subject


def _trusted(peer: str | None, proxies: tuple[Network, ...]) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:  # a Unix socket path, or no address at all
        return False
    return any(address in network for network in proxies)


def asgi_tls_subject(scope: Mapping[str, Any]) -> str | None:
    """The subject of the client certificate the server verified (ASGI ``tls`` extension), if any."""
    tls = (scope.get("extensions") or {}).get("tls")
    if not isinstance(tls, Mapping) or tls.get("client_cert_error") is not None:
        return None
    if not tls.get("client_cert_chain"):
        return None
    return _clean(tls.get("client_cert_name"))


def client_subject(
    settings: Settings, *, verified: str | None, peer: str | None, headers: Mapping[str, str]
) -> str | None:
    """The verified client certificate subject of a request: the server's own verdict first,
    else the trusted proxy's header (``headers`` with lower-case names), else None."""
    if verified is not None:
        return verified
    header = settings.tls_client_subject_header
    if header is None or not _trusted(peer, settings.tls_trusted_proxies):
        return None
    return _clean(headers.get(header))
