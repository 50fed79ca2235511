"""Endpoint construction and validation: a call can only ever reach its own service.

An endpoint is a path template such as ``/api/v1/users/{id}``. It is checked against a
small grammar (no scheme, no authority, no backslash, no dot segments, no control
characters) before it is filled in; each path parameter becomes exactly one percent-
encoded segment, so ``"../admin"`` or ``"a/b"`` as a parameter stays inside its segment.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import attrs

from ..errors import InvalidRequest

# RFC 3986 pchar plus '/' and the braces of a template; '%' only as a valid escape.
_ENDPOINT_RE = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/{}]|%[0-9A-Fa-f]{2})*$")
_FIELD_RE = re.compile(r"\{([^{}]*)\}")
_SCALARS = (str, int, float, uuid.UUID)
#: the longest URL sent (httpx's own limit; servers refuse far shorter ones): the same on every transport
MAX_URL_LENGTH = 65536


def _text(kind: str, name: str, value: object) -> str:
    """A scalar parameter as text, sendable as UTF-8: an int too long to write (Python refuses
    over 4300 digits) or a str with a lone surrogate is :class:`InvalidRequest` naming it
    (``kind`` and ``name`` make the message, only when there is one to make)."""
    try:
        text = str(value)
    except ValueError:
        raise InvalidRequest(f"{kind} {name!r} is a number too large to send") from None
    if type(value) is not int:  # an int's digits always are
        _encodable(f"{kind} {name!r}", text)
    return text


def _check_endpoint(endpoint: object) -> str:
    if not isinstance(endpoint, str):
        raise InvalidRequest(f"endpoint must be a str, got {type(endpoint).__name__}")
    if not endpoint.startswith("/") or endpoint.startswith("//"):
        raise InvalidRequest("endpoint must be a path starting with a single '/'")
    if not _ENDPOINT_RE.fullmatch(endpoint):  # not .match: '$' would accept a trailing newline
        raise InvalidRequest(
            "endpoint may contain only path characters (no scheme, backslash, whitespace, "
            "control characters, '?' or '#': pass query_params= for a query)"
        )
    for raw in _FIELD_RE.sub("x", endpoint).split("/"):
        segment = unquote(raw)  # split first, then decode: else an encoded '/' is never seen
        if segment in (".", ".."):
            raise InvalidRequest("endpoint must not contain '.' or '..' segments")
        if "/" in segment or "\\" in segment:
            raise InvalidRequest("endpoint must not contain an encoded '/' or '\\'")
    return endpoint


def _segment(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, _SCALARS):
        raise InvalidRequest(
            f"path parameter {name!r} must be a str, int, float or UUID, got {type(value).__name__}"
        )
    text = _text("path parameter", name, value)
    if type(value) is int:
        return text  # digits and a sign: nothing to encode
    if text in ("", ".", ".."):
        raise InvalidRequest(f"path parameter {name!r} must not be empty, '.' or '..'")
    return quote(text, safe="")


def _encodable(what: str, text: str) -> str:
    """``text`` if it can be sent as UTF-8 (a lone surrogate cannot), else :class:`InvalidRequest`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} is not valid Unicode (a lone surrogate?)") from None
    return text


@attrs.frozen
class Template:
    """A checked endpoint template split at its fields: ``literals[0]``, then each field's
    value followed by the next literal (``/users/{id}/posts``: ``("/users/", "/posts")``, ``("id",)``)."""

    literals: tuple[str, ...]
    fields: tuple[str, ...]
    names: frozenset[str]


@functools.lru_cache(maxsize=2048)
def _template(endpoint: str) -> Template:
    """A checked endpoint template; checked and split once per distinct template."""
    _check_endpoint(endpoint)
    pieces = _FIELD_RE.split(endpoint)  # literal, field, literal, ..., literal
    literals, fields = tuple(pieces[0::2]), tuple(pieces[1::2])
    for field in fields:
        if not field.isidentifier():
            raise InvalidRequest("path template fields must be identifiers like {id}")
    if any("{" in literal or "}" in literal for literal in literals):
        raise InvalidRequest("endpoint has an unbalanced '{' or '}'")
    return Template(literals, fields, frozenset(fields))


def fill_path(endpoint: str, path_params: Mapping[str, Any] | None) -> str:
    """The endpoint with each ``{name}`` replaced by its parameter as one encoded segment."""
    if not isinstance(endpoint, str):
        raise InvalidRequest(f"endpoint must be a str, got {type(endpoint).__name__}")
    template = _template(endpoint)
    if path_params is not None and not isinstance(path_params, Mapping):
        raise InvalidRequest(f"path_params must be a mapping, got {type(path_params).__name__}")
    if not path_params:
        if template.fields:
            raise InvalidRequest(f"path_params is missing {', '.join(sorted(template.names))}")
        return endpoint
    if set(path_params) != template.names:
        missing = sorted(template.names - set(path_params))
        if missing:
            raise InvalidRequest(f"path_params is missing {', '.join(missing)}")
        extra = sorted(map(str, set(path_params) - template.names))
        raise InvalidRequest(f"path_params has {', '.join(extra)} which the endpoint does not use")
    literals = template.literals
    parts = [literals[0]]
    for field, literal in zip(template.fields, literals[1:], strict=True):
        parts += (_segment(field, path_params[field]), literal)
    return "".join(parts)


def _query_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _SCALARS):
        return _text("query parameter", name, value)
    raise InvalidRequest(
        f"query parameter {name!r} must be a str, int, float, bool, UUID or a list of them, "
        f"got {type(value).__name__}"
    )


def encode_query(query_params: Mapping[str, Any] | None) -> str:
    """``query_params`` as a query string: lists repeat the key, booleans are true/false, None is dropped."""
    if not query_params:
        return ""
    if not isinstance(query_params, Mapping):
        raise InvalidRequest(f"query_params must be a mapping, got {type(query_params).__name__}")
    pairs: list[tuple[str, str]] = []
    for name, value in query_params.items():
        if not isinstance(name, str) or not name:
            raise InvalidRequest("query parameter names must be non-empty strings")
        _encodable("a query parameter name", name)
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((name, _query_value(name, v)) for v in values if v is not None)
    return urlencode(pairs, quote_via=quote)


def build_url(
    base_url: str,
    endpoint: str,
    path_params: Mapping[str, Any] | None = None,
    query_params: Mapping[str, Any] | None = None,
) -> str:
    """The full URL of ``endpoint`` under ``base_url``; refuses anything that could leave it.

    It cannot leave by construction: ``base_url`` has no query or fragment (settings check
    that), the checked template starts with a single ``/`` that ends the authority, each
    parameter is one percent-encoded segment and the query is encoded.
    """
    path = fill_path(endpoint, path_params)
    query = encode_query(query_params)
    url = base_url + path + ("?" + query if query else "")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(
            f"the URL (endpoint, path_params, query_params) is over {MAX_URL_LENGTH} characters"
        )
    return url


def same_origin(url: str, other: str) -> bool:
    """Whether two absolute URLs share scheme, host and port (a redirect may be followed)."""
    return _origin(url) == _origin(other)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a Location header with a bad port
        return ("", None, None)
    return parts.scheme, parts.hostname, port


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, or None if ``NO_PROXY`` covers its host.

    Read with the standard library's rules (as requests reads them), for the transports
    that do not read the environment themselves; used only when ``trust_env`` is on.
    """
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.netloc):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
