"""multipart/form-data bodies, encoded once here so every transport sends the same bytes.

HTTP libraries disagree on the details: requests sends no part ``Content-Type`` for a
``(filename, bytes)`` pair, httpx guesses one; they escape a ``"`` or ``\\`` in a
filename differently. svclink decides each detail itself, and a driver only sends the
bytes:

- a file part's type is the one given, else the one its filename's extension names
  (Python's built-in table, the same on every machine), else ``application/octet-stream``;
  a form field part has no type;
- names and filenames are quoted strings, UTF-8, with ``\\`` and ``"`` escaped by a
  backslash, which Django, Starlette/FastAPI (python-multipart) and Werkzeug all unquote;
  control characters are refused before this point;
- form fields come first, then files, each in the order given.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import Mapping

#: a file tuple: (filename, content) or (filename, content, content type)
FileSpec = tuple[str, bytes] | tuple[str, bytes, str]

DEFAULT_TYPE = "application/octet-stream"
#: the built-in table only: no system file is read, so the answer is the same everywhere
_TYPES = mimetypes.MimeTypes()


def content_type(spec: FileSpec) -> str:
    """The ``Content-Type`` of a file part."""
    if len(spec) == 3:
        return spec[2]
    guessed, _ = _TYPES.guess_type(spec[0], strict=False)
    return guessed or DEFAULT_TYPE


def quoted(text: str) -> str:
    """``text`` as a quoted string of a ``Content-Disposition`` parameter."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def new_boundary() -> str:
    return secrets.token_hex(16)


def encode(form: Mapping[str, str], files: Mapping[str, FileSpec], boundary: str) -> tuple[bytes, str]:
    """The body and its ``Content-Type`` header value."""
    delimiter = f"--{boundary}\r\n".encode()
    chunks: list[bytes] = []
    for name, value in form.items():
        chunks += [delimiter, f"Content-Disposition: form-data; name={quoted(name)}\r\n\r\n".encode()]
        chunks += [value.encode(), b"\r\n"]
    for name, spec in files.items():
        disposition = f"form-data; name={quoted(name)}; filename={quoted(spec[0])}"
        head = f"Content-Disposition: {disposition}\r\nContent-Type: {content_type(spec)}\r\n\r\n"
        chunks += [delimiter, head.encode(), spec[1], b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
