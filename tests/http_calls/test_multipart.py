"""Multipart bodies: the same bytes from both sides, read alike by a real framework.

requests sends no part Content-Type for a ``(filename, bytes)`` pair and httpx guesses
one; they escape ``"`` and ``\\`` in filenames differently. svclink encodes the body in
its core, so the raw bytes a server receives are the same from either side (but for the
random boundary), and Django's own parser sees the same parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import svclink

from ..conftest import Side
from ..server import Recorded, Reply, TestServer
from ..services import Uvicorn, clean_env

FILES: dict[str, Any] = {
    "avatar": ("avatar.png", b"\x89PNG\r\n"),
    "raw": b"\x00\x01",
    "doc": ('the "final" r\u00e9sum\u00e9.txt', b"text"),
    "typed": ("data.bin", b"{}", "application/json"),
}
PAYLOAD = {"user": "1", "note": "caf\u00e9"}

EXPECTED = (
    b'--B\r\nContent-Disposition: form-data; name="user"\r\n\r\n1\r\n'
    b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\ncaf\xc3\xa9\r\n'
    b'--B\r\nContent-Disposition: form-data; name="avatar"; filename="avatar.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\r\n"
    b'--B\r\nContent-Disposition: form-data; name="raw"; filename="raw"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n"
    b'--B\r\nContent-Disposition: form-data; name="doc"; '
    b'filename="the \\"final\\" r\xc3\xa9sum\xc3\xa9.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\ntext\r\n"
    b'--B\r\nContent-Disposition: form-data; name="typed"; filename="data.bin"\r\n'
    b"Content-Type: application/json\r\n\r\n{}\r\n"
    b"--B--\r\n"
)


def _with_boundary_b(rec: Recorded) -> bytes:
    ctype = rec.headers["content-type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    return rec.body.replace(ctype.split("boundary=", 1)[1].encode(), b"B")


def test_both_sides_send_the_same_multipart_bytes(side: Side, user_service: TestServer) -> None:
    user_service.route("POST", "/up", Reply(201, {}))
    side.call("user", "POST", "/up", payload=PAYLOAD, files=FILES)
    (rec,) = user_service.requests
    assert _with_boundary_b(rec) == EXPECTED
    assert rec.headers["content-length"] == str(len(rec.body))


def test_a_backslash_in_a_filename_survives_a_standard_parser(side: Side, user_service: TestServer) -> None:
    user_service.route("POST", "/up", Reply(201, {}))
    side.call("user", "POST", "/up", files={"f": ("C:\\temp\\a.txt", b"x")})
    assert user_service.requests[0].parts()["f"].filename == "C:\\temp\\a.txt"


@pytest.fixture(scope="module")
def django_server() -> Iterator[Uvicorn]:
    server = Uvicorn("tests.django_project.asgi:application", clean_env(), lifespan="off")
    yield server
    server.stop()


def test_django_parses_the_same_parts_from_both_sides(side: Side, django_server: Uvicorn) -> None:
    svclink.configure(service_connections=["user"], service_hosts={"user": django_server.url})
    seen = side.call("user", "POST", "/upload/", payload=PAYLOAD, files=FILES)
    assert seen == {
        "form": PAYLOAD,
        "files": {
            "avatar": {"filename": "avatar.png", "content_type": "image/png", "content": "\x89PNG\r\n"},
            "raw": {"filename": "raw", "content_type": "application/octet-stream", "content": "\x00\x01"},
            "doc": {
                "filename": 'the "final" r\u00e9sum\u00e9.txt',
                "content_type": "text/plain",
                "content": "text",
            },
            "typed": {"filename": "data.bin", "content_type": "application/json", "content": "{}"},
        },
    }
