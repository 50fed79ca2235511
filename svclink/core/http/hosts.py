"""Which host names a service may live at: the same answer for every HTTP transport.

The transports read host names by different rules. httpx refuses an IPv4-style host with
an octet over 255 and any name that IDNA 2008 does not allow (``xn--`` labels that do not
decode, emoji); requests resolves some of them through DNS instead, and refuses others.
So a service's base URL is checked here once, at configure time, by the strictest of
those rules (the ``idna`` package, which both libraries use), and a name no transport
can send to is a :class:`~svclink.ConfigurationError` instead of a failure on each call.
"""

from __future__ import annotations

import ipaddress
import re

import idna

_IPV4_STYLE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")


def host_problem(host: str) -> str | None:
    """What is wrong with ``host`` (from ``urlsplit(url).hostname``, lower-cased), or None."""
    if _IPV4_STYLE.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "has a host that is not a valid IPv4 address"
        return None
    if ":" in host:  # an IPv6 literal, checked by urlsplit already
        return None
    try:
        if not host.isascii():
            idna.encode(host)
        elif any(label.startswith("xn--") for label in host.split(".")):
            idna.decode(host)
    except (idna.IDNAError, UnicodeError):
        return "has a host name that is not valid IDNA (write it as its xn-- form, which must decode)"
    return None
