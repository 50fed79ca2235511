"""Which AMQP header values an event carries, and how: one rule for both drivers.

pika and aio-pika's pamqp disagree on headers: pika cannot encode a float or a tuple and
fails on an int beyond 64 bits mid-publish; pamqp sends floats as 32-bit (0.1 reads back
as 0), refuses ``bytes`` and tuples, and both cut names longer than 128 bytes. So svclink
checks the caller's headers once (:func:`check_headers`, before any I/O) and encodes
them itself (:func:`encode_table`); both drivers send those bytes as they are.

What travels, and as which AMQP field type:

==========================  ==========================================================
Python value                 on the wire (and as a consumer reads it back)
==========================  ==========================================================
``str``                      ``S`` long string, UTF-8 (no lone surrogates)
``bytes``, ``bytearray``     ``x`` byte array
``bool``                     ``t`` boolean
``int``                      ``I`` 32-bit or ``l`` 64-bit signed: -2**63 to 2**63 - 1
``float``                    ``d`` 64-bit double; finite only
``None``                     ``V`` void
``list``, ``tuple``          ``A`` array (a tuple reads back as a list)
``dict`` with ``str`` keys   ``F`` table
==========================  ==========================================================

Names (and nested keys) are non-empty, at most 128 bytes of UTF-8; containers nest at
most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidEvent

#: AMQP field names are short strings of at most 128 bytes (RabbitMQ and the clients cut longer ones)
MAX_NAME = 128
#: header values nest at most this deep (lists and dicts inside lists and dicts)
MAX_DEPTH = 10
_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)


def check_headers(headers: object) -> dict[str, Any]:
    """A checked copy of the caller's ``headers`` (tuples become lists, as they read back).

    Anything the table above does not list is refused with :class:`~svclink.InvalidEvent`
    naming the header, before any I/O.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidEvent(f"headers must be a mapping, got {type(headers).__name__}")
    return {_name(name, None): _value(name, value, 0) for name, value in headers.items()}


def _name(name: object, header: str | None) -> str:
    where = "header names" if header is None else f"the keys of header {header!r}"
    if not isinstance(name, str) or not name:
        raise InvalidEvent(f"{where} must be non-empty strings, got {name!r}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidEvent(f"{where} must be valid Unicode text: {name!r} holds a lone surrogate") from None
    if size > MAX_NAME:
        raise InvalidEvent(f"{where} must be at most {MAX_NAME} bytes in UTF-8: {name[:40]!r}... has {size}")
    return name


def _value(header: str, value: object, depth: int) -> Any:
    if value is None or isinstance(value, (bool, bytes)):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent(
                f"header {header!r} must be valid Unicode text (it holds a lone surrogate)"
            ) from None
        return value
    if isinstance(value, int):
        if value not in _INT64:
            raise InvalidEvent(f"header {header!r} must be an int from -2**63 to 2**63 - 1 (AMQP's 64 bits)")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(f"header {header!r} must be a finite float, not {value!r}")
        return float(value)
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_DEPTH:
        raise InvalidEvent(f"header {header!r} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, (list, tuple)):
        return [_value(header, item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_name(key, header): _value(header, item, depth + 1) for key, item in value.items()}
    raise InvalidEvent(
        f"header {header!r} must be a str, bytes, int, float, bool, None, or a list or str-keyed dict "
        f"of them, not {type(value).__name__}"
    )


def encode_table(headers: Mapping[str, Any]) -> bytes:
    """``headers`` (as :func:`check_headers` left them) as an AMQP field table, length first."""
    pieces: list[bytes] = []
    for name, value in headers.items():
        key = name.encode("utf-8")
        pieces.append(bytes((len(key),)) + key)
        _encode(value, pieces)
    body = b"".join(pieces)
    return struct.pack(">I", len(body)) + body


def _encode(value: Any, pieces: list[bytes]) -> None:
    if isinstance(value, str):
        data = value.encode("utf-8")
        pieces.append(struct.pack(">cI", b"S", len(data)) + data)
    elif isinstance(value, bool):
        pieces.append(b"t\x01" if value else b"t\x00")
    elif isinstance(value, int):
        pieces.append(struct.pack(">ci", b"I", value) if value in _INT32 else struct.pack(">cq", b"l", value))
    elif isinstance(value, float):
        pieces.append(struct.pack(">cd", b"d", value))
    elif value is None:
        pieces.append(b"V")
    elif isinstance(value, bytes):
        pieces.append(struct.pack(">cI", b"x", len(value)) + value)
    elif isinstance(value, list):
        items: list[bytes] = []
        for item in value:
            _encode(item, items)
        data = b"".join(items)
        pieces.append(struct.pack(">cI", b"A", len(data)) + data)
    else:  # a dict: check_headers let nothing else through
        pieces.append(b"F" + encode_table(value))
