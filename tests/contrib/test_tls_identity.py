"""The verified client certificate's subject beside the signed caller context, in the ASGI and
Django middleware: from the server's own TLS verdict, or the header of a trusted proxy only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import AsyncClient, Client, override_settings

import svclink
from svclink.contrib.asgi import Receive, Scope, Send, SvclinkMiddleware

from ..conftest import Side
from ..services import Uvicorn, clean_env
from .test_django import get  # noqa: F401 - importing it sets Django up

SUBJECT = "CN=api,O=svclink tests"
HEADER = "X-SSL-Client-S-DN"


def _uvicorn(trusted: str) -> Iterator[Uvicorn]:
    env = clean_env(
        SVCLINK_SERVICE_NAME="b",
        SVCLINK_TLS_CLIENT_SUBJECT_HEADER=HEADER,
        SVCLINK_TLS_TRUSTED_PROXIES=trusted,
    )
    server = Uvicorn("tests.asgi_app:app", env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind_proxy() -> Iterator[Uvicorn]:
    """Service B believing the subject header from 127.0.0.1, where its proxy (this test) is."""
    yield from _uvicorn("127.0.0.1")


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[Uvicorn]:
    """Service B believing the header only from a proxy at 127.0.0.2: the test is not it."""
    yield from _uvicorn("127.0.0.2/32,10.0.0.0/8")


@pytest.mark.parametrize("app", ["/bare", "/starlette"])
def test_asgi_exposes_the_subject_a_trusted_proxy_forwards(behind_proxy: Uvicorn, app: str) -> None:
    body = requests.get(f"{behind_proxy.url}{app}/echo", headers={HEADER: SUBJECT}, timeout=5).json()
    assert body["tls_subject"] == SUBJECT
    assert body["verified"] is False  # the signed caller context is a separate proof
    assert requests.get(f"{behind_proxy.url}{app}/echo", timeout=5).json()["tls_subject"] is None


def test_asgi_ignores_the_header_from_anyone_but_a_trusted_proxy(elsewhere: Uvicorn) -> None:
    body = requests.get(f"{elsewhere.url}/bare/echo", headers={HEADER: SUBJECT}, timeout=5).json()
    assert body["tls_subject"] is None


def _tls_scope(**tls: Any) -> Scope:
    """An HTTP scope as a server implementing the ASGI ``tls`` extension hands it to the app."""
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(HEADER.lower().encode(), b"CN=forged")],
        "client": ("192.0.2.7", 50000),
        "extensions": {
            "tls": {"server_cert": None, "client_cert_chain": [], "client_cert_error": None, **tls}
        },
    }


def _run_asgi(scope: Scope) -> Any:
    """The caller the middleware gives the app for ``scope``."""
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["svclink"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    asyncio.run(SvclinkMiddleware(app)(scope, receive, send))
    return seen[0]


def test_asgi_takes_the_subject_the_server_verified_from_the_tls_extension() -> None:
    # the ASGI tls extension: uvicorn and hypercorn do not implement it, servers that do pass this
    svclink.configure(tls_client_subject_header=HEADER, tls_trusted_proxies=["127.0.0.1"])
    verified = _tls_scope(client_cert_chain=["-----BEGIN CERTIFICATE-----..."], client_cert_name=SUBJECT)
    assert _run_asgi(verified).tls_subject == SUBJECT
    # a certificate the server could not verify, or none, is no subject; the header from an
    # untrusted peer (192.0.2.7) is not one either
    failed = _tls_scope(client_cert_chain=["..."], client_cert_name=SUBJECT, client_cert_error="expired")
    assert _run_asgi(failed).tls_subject is None
    assert _run_asgi(_tls_scope()).tls_subject is None


def test_django_exposes_the_subject_a_trusted_proxy_forwards(side: Side) -> None:
    settings = {
        "service_name": "api",
        "tls_client_subject_header": HEADER,
        "tls_trusted_proxies": ["127.0.0.1"],
    }
    with override_settings(SVCLINK=settings):
        body = _django_get(side, "/whoami-local/", {HEADER: SUBJECT})
        assert body["tls_subject"] == SUBJECT
        assert _django_get(side, "/whoami-local/", {})["tls_subject"] is None
    with override_settings(SVCLINK={**settings, "tls_trusted_proxies": ["10.0.0.0/8"]}):
        assert _django_get(side, "/whoami-local/", {HEADER: SUBJECT})["tls_subject"] is None


def test_django_under_asgi_takes_the_subject_from_the_tls_extension() -> None:
    from django.core.handlers.asgi import ASGIHandler

    tls = {"client_cert_chain": ["..."], "client_cert_name": SUBJECT, "client_cert_error": None}
    scope = {
        **_tls_scope(**tls),
        "path": "/awhoami-local/",
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Any] = []
    messages = [{"type": "http.request", "body": b""}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(60)  # the client stays connected; Django cancels this once it answered
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    with override_settings(SVCLINK={"service_name": "api"}):
        asyncio.run(
            ASGIHandler()(scope, receive, send)
        )  # Django's own ASGI entry point, as a server calls it
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert json.loads(body)["tls_subject"] == SUBJECT


def _django_get(side: Side, path: str, headers: dict[str, str]) -> Any:
    if side.runner is None:
        return Client().get(path, headers=headers).json()

    async def go() -> Any:
        return await AsyncClient().get("/a" + path.lstrip("/"), headers=headers)

    return side.runner.run(go()).json()
