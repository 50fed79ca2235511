"""Responses as values: decoding bodies, and reading the error bodies of common frameworks.

Error bodies arrive in many shapes. Insanic sends ``message``/``description`` and an
``error_code`` with a name and a value; Django REST framework sends ``detail`` (a string,
or field errors); FastAPI sends ``detail`` as a string or a list of validation errors;
anything else is plain text or HTML. Each is read into the same three fields. Nothing
unbounded is kept: a 10 MB error page yields a short excerpt.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

#: the most characters of a body kept in an exception, a log line or a message
EXCERPT_CHARS = 500
#: bodies larger than this are not parsed as JSON for error details
_PARSE_LIMIT = 256 * 1024
_TITLE_RE = re.compile(r"<title[^>]*>([^<]{1,500})</title>", re.IGNORECASE)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[:limit] + "…"


def _text(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    return excerpt(body[: limit * 4].decode("utf-8", "replace"), limit)


@attrs.frozen
class Response:
    """A response as svclink saw it; returned to callers who ask for the raw response."""

    status_code: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def is_json(headers: Mapping[str, str]) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class NotJSON(ValueError):
    """Internal: the body could not be decoded; carries a safe reason."""


def decode_json(headers: Mapping[str, str], body: bytes) -> Any:
    """The decoded JSON body; None for an empty body; :class:`NotJSON` otherwise."""
    if not body.strip():
        return None
    ctype = headers.get("content-type", "")
    if ctype and not is_json(headers):
        raise NotJSON(f"content type is {excerpt(ctype, 100)!r}, not JSON")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotJSON(f"invalid JSON: {exc}") from None


@attrs.frozen
class ErrorDetails:
    """The parts of an error body that every :class:`APIException` carries."""

    message: str
    error_code: str | None = None
    description: str | None = None
    #: the decoded body for JSON errors (dropped when large), else a text excerpt
    body: Any = None


def _fastapi_errors(detail: list[Any]) -> ErrorDetails:
    parts, code = [], None
    for item in detail[:5]:
        if isinstance(item, Mapping):
            loc = ".".join(str(p) for p in item.get("loc", ()))
            parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            code = code or (str(item["type"]) if "type" in item else None)
        else:
            parts.append(str(item))
    return ErrorDetails(excerpt("; ".join(parts)), code, None)


def _from_mapping(data: Mapping[str, Any], reason: str) -> ErrorDetails:
    code_field = data.get("error_code", data.get("code"))
    if isinstance(code_field, Mapping):  # Insanic: {"name": ..., "value": ...}
        name, value = code_field.get("name"), code_field.get("value")
        code = str(name) if name is not None else (str(value) if value is not None else None)
    else:
        code = str(code_field) if code_field is not None else None
    description = data.get("description")
    description = excerpt(str(description)) if description is not None else None
    if "message" in data and not isinstance(data["message"], (Mapping, list)):
        return ErrorDetails(excerpt(str(data["message"])), code, description)
    detail = data.get("detail")
    if isinstance(detail, str):  # DRF, FastAPI HTTPException
        return ErrorDetails(excerpt(detail), code, description)
    if isinstance(detail, list):  # FastAPI validation errors
        details = _fastapi_errors(detail)
        return attrs.evolve(details, error_code=code or details.error_code, description=description)
    if data:  # DRF field errors: {"field": ["msg", ...], ...}
        fields = []
        for key, value in list(data.items())[:5]:
            msg = value[0] if isinstance(value, list) and value else value
            fields.append(f"{key}: {msg}")
        return ErrorDetails(excerpt("; ".join(fields)), code, description)
    return ErrorDetails(reason, code, description)


def error_details(status: int, reason: str, headers: Mapping[str, str], body: bytes) -> ErrorDetails:
    """Read an error response into message, error code and description, bounded in size."""
    fallback = reason or f"HTTP {status}"
    if len(body) <= _PARSE_LIMIT:
        try:
            data = decode_json(headers, body)
        except NotJSON:
            data = None
        else:
            small = data if len(body) <= 4 * EXCERPT_CHARS else None
            if isinstance(data, Mapping):
                return attrs.evolve(_from_mapping(data, fallback), body=small)
            if isinstance(data, str):
                return ErrorDetails(excerpt(data), body=small)
            if isinstance(data, list):
                return attrs.evolve(_fastapi_errors(data), body=small)
    if not body.strip():
        return ErrorDetails(fallback)
    text = _text(body)
    title = _TITLE_RE.search(body[:_PARSE_LIMIT].decode("utf-8", "replace"))
    if title and title.group(1).strip():  # an HTML error page: its title says what happened
        first = html.unescape(title.group(1).strip())
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), fallback)
    return ErrorDetails(excerpt(first, 200), None, text, body=text)
