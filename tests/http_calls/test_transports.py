"""Choosing the HTTP library: for every service, per service, from the environment.

Every other HTTP scenario runs on all four transports through the ``side`` fixture; these
tests check that the choice itself lands where the settings say.
"""

from __future__ import annotations

import asyncio

import pytest

import svclink
import svclink.aio
import svclink.sync

from ..server import Reply, TestServer


def _both(server: TestServer, **settings: object) -> None:
    svclink.configure(
        service_connections=["user", "billing"],
        service_hosts={"user": server.url, "billing": server.url},
        **settings,
    )


async def _aio(name: str) -> tuple[str, object]:
    service = await svclink.aio.get_service(name)
    return service.transport, await service.http_dispatch("GET", "/ok")


def test_the_defaults_are_requests_and_httpx(server: TestServer) -> None:
    server.route("GET", "/ok", Reply(200, {"ok": True}))
    _both(server)
    assert svclink.sync.get_service("user").transport == "requests"
    assert asyncio.run(_aio("user")) == ("httpx", {"ok": True})


def test_a_service_can_have_its_own_transport(server: TestServer) -> None:
    server.route("GET", "/ok", Reply(200, {"ok": True}))
    _both(server, sync_transports={"billing": "urllib3"}, aio_transports={"billing": "aiohttp"})
    user, billing = svclink.sync.get_service("user"), svclink.sync.get_service("billing")
    assert (user.transport, billing.transport) == ("requests", "urllib3")
    assert user.http_dispatch("GET", "/ok") == billing.http_dispatch("GET", "/ok") == {"ok": True}
    assert asyncio.run(_aio("user")) == ("httpx", {"ok": True})
    assert asyncio.run(_aio("billing")) == ("aiohttp", {"ok": True})


def test_the_environment_chooses_and_a_per_service_choice_wins(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.route("GET", "/ok", Reply(200, {"ok": True}))
    monkeypatch.setenv("SVCLINK_SYNC_TRANSPORT", "URLLIB3")
    monkeypatch.setenv("SVCLINK_AIO_TRANSPORT", "aiohttp")
    _both(server, sync_transports={"billing": "requests"}, aio_transports={"billing": "httpx"})
    assert svclink.sync.get_service("user").transport == "urllib3"
    assert svclink.sync.get_service("billing").transport == "requests"
    assert asyncio.run(_aio("user")) == ("aiohttp", {"ok": True})
    assert asyncio.run(_aio("billing")) == ("httpx", {"ok": True})


@pytest.mark.parametrize(
    ("field", "value"),
    [("sync_transport", "httpx"), ("aio_transport", "requests"), ("sync_transports", {"user": "curl"})],
)
def test_an_unknown_transport_is_refused_at_configure_time_naming_the_choices(
    server: TestServer, field: str, value: object
) -> None:
    with pytest.raises(svclink.ConfigurationError) as info:
        _both(server, **{field: value})
    assert field in str(info.value)
    assert ("requests, urllib3" if field.startswith("sync") else "httpx, aiohttp") in str(info.value)
