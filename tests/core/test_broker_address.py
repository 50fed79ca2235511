"""Which node and virtual host an ``amqp_url`` names: decided once, read alike by both drivers."""

from __future__ import annotations

import pytest

from svclink.core.events.broker import broker_address


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "/"),
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "/"),
        ("amqp://guest:guest@127.0.0.1:5672/", "/"),
        ("amqp://guest:guest@127.0.0.1:5672", "/"),
        ("amqp://h/orders", "orders"),
        ("amqp://h/a%2Fb", "a/b"),
        ("amqp://h/my%20vhost", "my vhost"),
    ],
)
def test_the_vhost_of_a_url(url: str, vhost: str) -> None:
    assert broker_address(url).vhost == vhost


@pytest.mark.parametrize("vhost", ["/", "orders", "a/b", "my vhost"])
def test_pika_and_aiormq_read_the_canonical_url_as_the_same_vhost(vhost: str) -> None:
    import asyncio
    from urllib.parse import quote

    import aiormq
    import pika

    url = broker_address(f"amqp://u:p@h:5672/{quote(vhost, safe='')}").url
    assert pika.URLParameters(url).virtual_host == vhost

    async def aiormq_vhost() -> str:
        return str(aiormq.Connection(url).vhost)

    assert asyncio.run(aiormq_vhost()) == vhost


def test_the_safe_form_has_no_credentials() -> None:
    address = broker_address("amqps://user:secret@[::1]/orders?heartbeat=5")
    assert address.safe == "amqps://[::1]:5671/orders"
    assert "secret" not in repr(address)
