"""What a publish sends, and what it refuses before any I/O: the same on both sides.

Header values travel by one rule (floats as 64-bit doubles, ints within 64 bits, names
of at most 128 bytes); anything else, and names, ids, types and timeouts the clients
cannot send, raise :class:`~svclink.InvalidEvent` naming the culprit before a connection
is opened (the refusals below are made against a port nothing listens on: any I/O would
end in BrokerUnavailable instead).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aio_pika
import pytest

import svclink

from ..events_support import RABBITMQ_URL, EventEnv, env_fixture

env = env_fixture()
side_only = env_fixture([("sync", "memory"), ("aio", "memory")])

#: every kind of value a header may hold, and how a consumer reads it back
HEADERS: dict[str, Any] = {
    "tenth": 0.1,
    "wide": 123456789.123,
    "huge": 1e300,
    "tiny": -5e-324,
    "tuple": (1, "two"),
    "bytes": b"\x00\x01\xff",
    "max": 2**63 - 1,
    "min": -(2**63),
    "int32": 2**31,
    "none": None,
    "yes": True,
    "nested": {"k": [1, 0.5, "s", {"deep": 2.25}]},
    "text": "ü😀",
    "😀" * 32: "a name of 128 bytes",
}
EXPECTED = {**HEADERS, "tuple": [1, "two"]}


def _read_raw(queue: str) -> dict[str, Any]:
    """The headers of the message in ``queue`` as a client that decodes doubles reads them
    (aio-pika; pika decodes a double as an int)."""

    async def get() -> dict[str, Any]:
        connection = await aio_pika.connect(RABBITMQ_URL)
        try:
            channel = await connection.channel()
            message = await (await channel.get_queue(queue)).get(no_ack=True)
            assert message is not None
            return dict(message.headers)
        finally:
            await connection.close()

    return asyncio.run(get())


def test_header_values_arrive_as_sent(env: EventEnv) -> None:
    sink = env.sink(["#"])
    env.publish("user.updated", {}, headers=HEADERS)
    if env.broker.kind == "rabbitmq":
        got = _read_raw(sink)
        got["bytes"] = bytes(got["bytes"])  # aio-pika hands a byte array back as a bytearray
    else:
        message = svclink.testing.get_broker().get(sink)
        assert message is not None
        got = dict(message.headers)
    assert {name: got[name] for name in EXPECTED} == EXPECTED
    assert isinstance(got["tenth"], float) and got["tenth"] == 0.1  # not 32 bits


def _refused_before_io(env: EventEnv, **kwargs: Any) -> str:
    env.configure(amqp_url="amqp://guest:guest@127.0.0.1:1/")  # any I/O would be BrokerUnavailable
    kwargs.setdefault("exchange", env.exchange)
    event_type = kwargs.pop("event_type", "user.updated")
    with pytest.raises(svclink.InvalidEvent) as raised:
        env.publisher().publish(event_type, {}, **kwargs)
    return str(raised.value)


BAD_HEADERS = [
    ({"big": 2**63}, "'big'"),
    ({"small": -(2**63) - 1}, "'small'"),
    ({"nan": math.nan}, "'nan'"),
    ({"inf": [math.inf]}, "'inf'"),
    ({"obj": object()}, "'obj'"),
    ({"set": {1}}, "'set'"),
    ({"surrogate": "\ud800"}, "'surrogate'"),
    ({"intkey": {1: 2}}, "'intkey'"),
    ({"😀" * 33: "v"}, "128 bytes"),
    ({"outer": {"é" * 65: 1}}, "'outer'"),
    ({"\ud800": 1}, "surrogate"),
    ({"deep": [[[[[[[[[[[1]]]]]]]]]]]}, "'deep'"),
]


@pytest.mark.parametrize(("headers", "named"), BAD_HEADERS, ids=[str(i) for i in range(len(BAD_HEADERS))])
def test_a_header_no_client_can_send_is_refused_before_io(
    side_only: EventEnv, headers: dict[Any, Any], named: str
) -> None:
    assert named in _refused_before_io(side_only, headers=headers)


BAD_ARGUMENTS = [
    ({"event_type": "user.\ud800"}, "event type"),
    ({"exchange": "\ud800"}, "exchange"),
    ({"exchange": "ä"}, "exchange"),
    ({"exchange": "events\u00a0x"}, "exchange"),
    ({"event_id": "é" * 140}, "event_id"),  # 140 characters, 280 bytes
    ({"event_id": "\ud800"}, "event_id"),
    ({"timeout": 10**5000}, "timeout"),
    ({"timeout": 1e10}, "timeout"),
]


@pytest.mark.parametrize(("kwargs", "named"), BAD_ARGUMENTS, ids=[str(i) for i in range(len(BAD_ARGUMENTS))])
def test_other_arguments_no_client_can_send_are_refused_before_io(
    side_only: EventEnv, kwargs: dict[str, Any], named: str
) -> None:
    text = _refused_before_io(side_only, **kwargs)
    assert named in text
    assert "JSON" not in text  # an event_id is not event data


def test_a_timeout_of_a_day_is_accepted(env: EventEnv) -> None:
    env.sink(["#"])
    env.publish("user.updated", {}, timeout=86400)


@pytest.mark.parametrize("name", ["qué", "q\ud800", "queue\u00a0x"])
def test_a_queue_name_no_client_can_declare_is_refused_when_the_consumer_is_made(
    side_only: EventEnv, name: str
) -> None:
    with pytest.raises(svclink.InvalidEvent, match="queue"):
        side_only.module.EventConsumer(name, exchange=side_only.exchange)
