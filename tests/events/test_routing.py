"""The topic matcher agrees with RabbitMQ itself, and the memory broker routes the same way.

One queue per binding pattern, one raw message per routing key (empty words and the empty
key included, which svclink's own publisher refuses as event types): each queue must
hold exactly the keys :func:`svclink.core.events.topics.matches` says it matches.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from svclink.core.events import topics

from ..events_support import BrokerView, MemoryView, RabbitView, eventually

PATTERNS = [
    "#",
    "*",
    "",
    "a",
    "a.*",
    "a.#",
    "#.a",
    "a.#.b",
    "*.*",
    "#.#",
    "#.*",
    "a..b",
    "a.*.b",
    "*.b.#",
    "a*",
]
KEYS = ["", "a", "b", ".", "a.", ".a", "a.b", "a..b", "a.x.b", "a.x.y.b", "a.b.b", "x.b.c", "a*", "ab"]


@pytest.fixture(params=["rabbitmq", "memory"])
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerView]:
    view: BrokerView = RabbitView() if request.param == "rabbitmq" else MemoryView()
    yield view
    view.close()


def test_each_pattern_receives_exactly_the_keys_the_core_matcher_says(broker: BrokerView) -> None:
    run = uuid.uuid4().hex[:10]
    exchange = f"test.routing.{run}"
    queues = {pattern: f"test.routing.{run}.{i}" for i, pattern in enumerate(PATTERNS)}
    try:
        for pattern, queue in queues.items():
            broker.sink(queue, exchange, [pattern])
        for key in KEYS:
            broker.publish_raw(exchange, key, json.dumps(key).encode())
        for pattern, queue in queues.items():
            expected = sorted(k for k in KEYS if topics.matches(pattern, k))
            count = len(expected)
            eventually(lambda q=queue, n=count: broker.count(q) == n, what=f"{pattern!r} -> {expected}")
            got = []
            while (message := broker.get(queue)) is not None:
                got.append(json.loads(message.body))
            assert sorted(got) == expected, pattern
    finally:
        broker.delete(list(queues.values()), [exchange])
