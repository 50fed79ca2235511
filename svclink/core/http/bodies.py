"""Response bodies read as they arrive, bounded by ``max_response_size``.

A driver streams the body through :class:`Body` chunk by chunk. The announced
``Content-Length`` is checked before the first byte is read, every chunk is counted,
and the first chunk that passes the bound ends the read with :class:`TooLarge`: no more
than the bound is ever kept. The bytes go into one growing buffer whose value is handed
out without a copy, so a body costs about its own size in memory, not two or three times.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import attrs

#: statuses that never carry a body, whatever their headers say
_NO_BODY = frozenset({204, 304})
#: the chunk size drivers read with
CHUNK = 64 * 1024


class TooLarge(Exception):
    """Raised by :class:`Body` in a driver's send: the body is over the bound."""

    def __init__(self, status: int, limit: int, declared: int | None) -> None:
        super().__init__(f"response over {limit} bytes")
        self.status, self.limit, self.declared = status, limit, declared


def declared_size(method: str, status: int, headers: Mapping[str, str]) -> int | None:
    """The body size the headers (lower-case names) announce, if they say it for sure.

    None after a HEAD, for a status without a body, a body sent compressed (its
    Content-Length is not the size svclink keeps) or a missing or malformed length.
    """
    if method == "HEAD" or status in _NO_BODY or status < 200:
        return None
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() and len(value) < 20 else None


@attrs.define
class Body:
    """One response body as it arrives; ``limit`` None means no bound.

    A body that comes in one chunk is kept as that chunk (no buffer, no copy); a second
    chunk starts the buffer.
    """

    status: int
    limit: int | None
    #: the body may be read in one piece: no bound, or an announced length within it
    whole: bool = False
    read: int = 0
    _first: bytes = attrs.field(default=b"", repr=False)
    _buffer: io.BytesIO | None = attrs.field(default=None, repr=False)

    @classmethod
    def start(cls, method: str, status: int, headers: Mapping[str, str], limit: int | None) -> Body:
        """A body to fill; :class:`TooLarge` at once if its announced length is over ``limit``."""
        if limit is None:
            return cls(status, limit, whole=True)
        declared = declared_size(method, status, headers)
        if declared is not None and declared > limit:
            raise TooLarge(status, limit, declared)
        return cls(status, limit, whole=declared is not None)

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``; :class:`TooLarge` (and nothing kept) if it takes the body over the bound."""
        self.read += len(chunk)
        if self.limit is not None and self.read > self.limit:
            raise TooLarge(self.status, self.limit, None)
        if self._buffer is not None:
            self._buffer.write(chunk)
        elif not self._first:
            self._first = chunk
        else:
            self._buffer = io.BytesIO(self._first)
            self._buffer.seek(0, io.SEEK_END)
            self._buffer.write(chunk)
            self._first = b""

    def value(self) -> bytes:
        """The whole body (the chunk or the buffer's own bytes: no copy is made)."""
        if self._buffer is None:
            value, self._first = self._first, b""
            return value
        value = self._buffer.getvalue()
        self._buffer = None
        return value
