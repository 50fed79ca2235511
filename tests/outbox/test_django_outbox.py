"""The Django outbox on real PostgreSQL and RabbitMQ: an event is published if, and only if, its
transaction commits; the relay (``manage.py svclink_relay``) sends what the send after the commit
could not."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import pytest

from ..django_project import setup

setup()

from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

import svclink  # noqa: E402
from svclink.context import bind  # noqa: E402
from svclink.contrib.django import publish_on_commit  # noqa: E402

from ..django_project.shop.models import Order  # noqa: E402
from ..events_support import RABBITMQ_URL, RabbitView, eventually  # noqa: E402
from ..outbox_support import query  # noqa: E402
from ..server import closed_port  # noqa: E402

pytestmark = pytest.mark.rabbitmq


class Refused(Exception):
    """The view's own failure, after publish_on_commit: the transaction rolls back."""


@pytest.fixture
def pg(django_pg: str) -> str:
    return django_pg


@pytest.fixture
def sink() -> Iterator[tuple[RabbitView, str, str]]:
    """An exchange of the test's own with a queue bound to ``order.*``: (broker view, exchange, queue)."""
    view = RabbitView()
    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"test.outbox.{tag}", f"test.outbox.{tag}.sink"
    view.sink(queue, exchange, ["order.*"])
    yield view, exchange, queue
    view.delete([queue], [exchange])


def drain(view: RabbitView, queue: str) -> list[dict[str, object]]:
    got = []
    while (message := view.get(queue)) is not None:
        got.append(json.loads(message.body))
    return got


def relay_once() -> str:
    out = io.StringIO()
    call_command("svclink_relay", "--once", "--database", "pg", stdout=out)
    return out.getvalue()


def test_a_rolled_back_transaction_publishes_nothing(pg: str, sink: tuple[RabbitView, str, str]) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL)
    with pytest.raises(Refused), transaction.atomic(using="pg"):
        Order.objects.using("pg").create(number=1)
        publish_on_commit("order.created", {"number": 1}, exchange=exchange, using="pg")
        raise Refused
    with transaction.atomic(using="pg"):
        Order.objects.using("pg").create(number=2)
        event = publish_on_commit("order.created", {"number": 2}, exchange=exchange, using="pg")
    assert "sent 0" in relay_once()
    (got,) = eventually(lambda: drain(view, queue), what="the committed event")
    assert got["event_id"] == event.event_id and got["data"] == {"number": 2}
    assert relay_once().startswith("sent 0")
    assert drain(view, queue) == []
    assert query(pg, "SELECT count(*) FROM svclink_outbox") == [(0,)]


def test_the_relay_sends_what_the_send_after_commit_could_not(
    pg: str, sink: tuple[RabbitView, str, str]
) -> None:
    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=f"amqp://guest:guest@127.0.0.1:{closed_port()}/")
    with bind(request_id="req-outbox-1"):
        events = []
        for number in (10, 11, 12):
            with transaction.atomic(using="pg"):
                Order.objects.using("pg").create(number=number)
                events.append(
                    publish_on_commit("order.created", {"number": number}, exchange=exchange, using="pg")
                )
    assert query(pg, "SELECT count(*) FROM svclink_outbox WHERE state = 'pending'") == [(3,)]
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL)
    assert relay_once().startswith("sent 3, failed 0, pending 0")
    got = eventually(lambda: drain(view, queue), what="the relayed events")
    assert [g["event_id"] for g in got] == [e.event_id for e in events]  # in order of creation
    assert all(g["context"]["request_id"] == "req-outbox-1" for g in got)  # captured at the call
    assert query(pg, "SELECT count(*) FROM svclink_outbox") == [(0,)]


def test_bad_input_is_refused_before_anything_is_written(pg: str) -> None:
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL)
    before = query(pg, "SELECT count(*) FROM svclink_outbox")
    with pytest.raises(svclink.InvalidEvent, match="format='flat'"):
        publish_on_commit("order.created", [1], format="flat", using="pg")
    with pytest.raises(svclink.InvalidEvent):
        publish_on_commit("", {}, using="pg")
    with pytest.raises(svclink.InvalidEvent, match="headers must be JSON values"):
        publish_on_commit("order.created", {}, headers={"x-raw": b"bytes"}, using="pg")
    assert query(pg, "SELECT count(*) FROM svclink_outbox") == before


def test_with_a_retention_sent_rows_are_kept_marked_then_pruned(
    pg: str, sink: tuple[RabbitView, str, str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from svclink.contrib.django import DjangoOutbox

    view, exchange, queue = sink
    svclink.configure(service_name="shop", amqp_url=RABBITMQ_URL, outbox_retention=3600)
    query(pg, "DELETE FROM svclink_outbox")
    with transaction.atomic(using="pg"):
        event = publish_on_commit("order.created", {"number": 30}, exchange=exchange, using="pg")
    (got,) = eventually(lambda: drain(view, queue))
    assert got["event_id"] == event.event_id
    assert query(pg, "SELECT state, sent_at IS NOT NULL FROM svclink_outbox") == [("sent", True)]
    assert relay_once().startswith("sent 0")
    store = DjangoOutbox("pg")
    assert store.prune_sent(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert store.prune_sent(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert query(pg, "SELECT count(*) FROM svclink_outbox") == [(0,)]


def test_status_lists_a_failed_row_with_its_reason(pg: str, sink: tuple[RabbitView, str, str]) -> None:
    exchange = sink[1]
    svclink.configure(
        service_name="shop", amqp_url=RABBITMQ_URL, unroutable="raise", outbox_send_after_commit=False
    )
    query(pg, "DELETE FROM svclink_outbox")
    lost = publish_on_commit(
        "invoice.created", {"number": 40}, exchange=exchange, using="pg"
    )  # no queue bound
    assert relay_once().startswith("sent 0, failed 1, pending 0")
    out = io.StringIO()
    call_command("svclink_relay", "--status", "--database", "pg", stdout=out)
    status = out.getvalue().splitlines()
    assert status[:3] == ["pending 0", "sent 0", "failed 1"]
    assert f"invoice.created {lost.event_id}: " in status[3] and "unroutable" in status[3]
    query(pg, "DELETE FROM svclink_outbox")
