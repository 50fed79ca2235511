"""Redaction: the text svclink logs or raises never carries a credential.

Secrets reach log lines and exception messages in a few shapes: a header in a dict
repr or an ``Name: value`` line (Authorization, Cookie, the signed context), a URL with
a password (``amqp://user:pass@host``), a query string (``?token=...``) and the
configured signing keys verbatim. :func:`redact` rewrites all of them; it is cheap
enough to run on every svclink log record and exception text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

MASK = "[redacted]"

#: headers whose values are credentials
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "x-csrftoken",
        "x-svclink-context",
    }
)
#: query-string and form parameter names whose values are credentials
SECRET_PARAMS = (
    "access_token",
    "api_key",
    "apikey",
    "auth",
    "client_secret",
    "key",
    "password",
    "passwd",
    "pwd",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "token",
)

_HEADER_ALT = "|".join(re.escape(h) for h in sorted(SECRET_HEADERS, key=len, reverse=True))
# 'Authorization': 'Bearer x'  /  "cookie": "a=b"  (dict and JSON reprs)
# (a closing quote may be missing: an excerpt of an error body can end inside the value)
_QUOTED_HEADER = re.compile(
    rf"""(?i)(['"](?:{_HEADER_ALT})['"]\s*[:,]\s*)(?:'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|b'[^']*'?)"""
)
# Authorization: Bearer x   (header lines, up to the end of the line)
_LINE_HEADER = re.compile(rf"(?im)(^|[\s,;{{(])((?:{_HEADER_ALT})\s*[:=]\s*)[^\r\n]*")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]*(@)")
# ?token=x&a=1  /  &password=x
_PARAM_ALT = "|".join(SECRET_PARAMS)
_QUERY_PARAM = re.compile(rf"(?i)([?&;](?:[a-z0-9_.-]*[_.-])?(?:{_PARAM_ALT})=)[^&;#\s'\"]*")
_SECRET_NAME = re.compile(rf"(?i)(?:[a-z0-9_.-]*[_.-])?(?:{_PARAM_ALT})")
# a bare svclink token anywhere
_TOKEN = re.compile(r"\bv1\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every credential svclink knows how to spot replaced by ``[redacted]``.

    ``secrets`` are values that must never appear however they are spelled in (the
    signing and verification keys).
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _QUOTED_HEADER.sub(lambda m: f"{m.group(1)}'{MASK}'", text)
    text = _LINE_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)
    text = _QUERY_PARAM.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _TOKEN.sub(MASK, text)


def given_secrets(headers: Mapping[str, str], url: str = "") -> tuple[str, ...]:
    """The credentials a caller gave svclink for one call, to mask wherever they are echoed.

    That is the value of every credential header (and the credential after its scheme, as
    in ``Bearer <token>``) and of every secret query parameter of ``url``: a server that
    quotes them back in an error body must not get them into svclink's exception texts,
    however it spells them.
    """
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS and isinstance(value, str):
            found.append(value.strip())
            found.extend(part for part in value.split()[1:2])  # "Bearer <token>": the token alone
    query = urlsplit(url).query if url else ""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if _SECRET_NAME.fullmatch(name):
            found.append(value)
    # longest first, so a value is masked whole before any part of it
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the value of every credential header masked."""
    return {k: (MASK if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def redact_url(url: str) -> str:
    """``url`` without its password or secret query parameters."""
    return redact(url)
