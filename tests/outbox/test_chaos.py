"""The chaos run of bench/outbox_chaos.py, smaller: 200 orders, each in a transaction with
``publish_on_commit``, every tenth rolled back; the broker (a private node) stopped for 5 s, the
relay killed with SIGKILL twice, the consumer killed with SIGKILL twice while a handler runs.
Nothing is lost, nothing is handled twice, nothing is sent for a rolled-back order."""

from __future__ import annotations

import pytest

from bench.outbox_chaos import report, run

from ..rabbit_node import private_node

pytestmark = pytest.mark.rabbitmq


@pytest.mark.timeout(400)
@pytest.mark.parametrize("kind", ["django", "sqlalchemy"])
def test_no_event_is_lost_or_handled_twice_through_kills_and_a_broker_stop(kind: str) -> None:
    with private_node() as node:
        counts = run(kind, 200, node, interval=0.03, log=lambda line: None)
    print(report(counts))
    assert counts.orders_committed == 180 and counts.orders_rolled_back == 20
    assert counts.shipments == counts.events_handled == counts.orders_committed
    assert counts.duplicate_shipments == 0
    assert counts.shipments_for_rolled_back == 0
    assert (counts.outbox_pending, counts.outbox_failed) == (0, 0)
    assert counts.relay_kills == 2 and counts.consumer_kills_mid_handler == 2
    assert counts.broker_down_seconds >= 5.0
