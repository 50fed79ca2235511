"""The outbox's and inbox's decisions, without a database or a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import svclink
from svclink.context import bind
from svclink.core.errors import PublishError, PublishNacked, PublishTimeout, UnroutableError
from svclink.core.events.inbox import EventInFlight, redis_key, taken
from svclink.core.events.outbox import (
    FAILED,
    PENDING,
    SENT,
    RelayCounts,
    RelayPace,
    RelayPolicy,
    RowUpdate,
    SendNowGate,
    StoredRow,
    batch,
    outbox_row,
    row_writes,
    stored_message,
    verdict,
)
from svclink.core.events.running import State


def row_of(settings: svclink.Settings, **kwargs: object) -> StoredRow:
    _, row = outbox_row(
        settings, "order.created", {"n": 1}, exchange=None, event_id=None, headers=None, wall=0.0
    )
    fields = {
        "id": 1, "event_id": row.event_id, "exchange": row.exchange, "routing_key": row.routing_key,
        "body": row.body, "properties": row.properties,
    }  # fmt: skip
    fields.update(kwargs)
    return StoredRow(**fields)  # type: ignore[arg-type]


def test_a_row_stands_for_the_message_publish_would_send() -> None:
    settings = svclink.configure(service_name="shop", signing_key="k" * 32)
    with bind(request_id="req-1"):
        event, row = outbox_row(
            settings,
            "order.created",
            {"n": 1},
            exchange="shop",
            event_id="e-1",
            headers={"x-a": 1},
            wall=10.0,
        )  # fmt: skip
    assert (row.event_id, row.event_type, row.exchange, row.routing_key, row.state) == (
        "e-1", "order.created", "shop", "order.created", PENDING,
    )  # fmt: skip
    message = stored_message(
        StoredRow(7, row.event_id, row.exchange, row.routing_key, row.body, row.properties)
    )
    assert message.body == row.body and json.loads(message.body)["context"]["request_id"] == "req-1"
    assert message.properties.message_id == "e-1" and message.properties.headers["x-a"] == 1
    assert "X-Svclink-Context" in message.properties.headers  # signed at the call, with the context then
    assert event.event_id == "e-1"


def test_bad_input_is_refused_before_anything_is_written() -> None:
    settings = svclink.configure()
    with pytest.raises(svclink.InvalidEvent, match="headers must be JSON values"):
        outbox_row(settings, "a.b", {}, exchange=None, event_id=None, headers={"x": b"raw"}, wall=0.0)
    with pytest.raises(svclink.InvalidEvent):
        outbox_row(settings, "", {}, exchange=None, event_id=None, headers=None, wall=0.0)


def test_what_an_outcome_makes_of_a_row() -> None:
    assert verdict(1, None) == RowUpdate(1, SENT)
    assert verdict(2, UnroutableError("no queue"), "raise") == RowUpdate(2, FAILED, "no queue")
    assert verdict(2, UnroutableError("no queue"), "warn") == RowUpdate(2, SENT, "no queue")  # as publish
    assert verdict(3, PublishNacked("refused")).state == FAILED
    assert verdict(4, PublishTimeout("late")) == RowUpdate(4, PENDING, "late")  # may have landed: again
    assert verdict(5, PublishError("lost")).state == PENDING


def test_a_garbled_row_fails_at_once_and_the_rest_are_sent() -> None:
    settings = svclink.configure()
    good, bad = row_of(settings, id=1), row_of(settings, id=2, properties="{not json")
    claimed = batch([good, bad])
    assert [r.id for r in claimed.rows] == [1] and len(claimed.messages) == 1
    assert [u.id for u in claimed.invalid] == [2] and claimed.invalid[0].state == FAILED
    assert claimed.outcomes({}, "warn") == [claimed.invalid[0], RowUpdate(1, SENT)]
    assert [u.state for u in claimed.unsent(OSError("down"))] == [FAILED, PENDING]


def test_the_relay_paces_itself() -> None:
    pace = RelayPace(RelayPolicy(batch_size=2, poll_interval=0.5))
    assert pace.after(2, [RowUpdate(1, SENT), RowUpdate(2, SENT)]) == 0.0  # a full batch: more may wait
    assert pace.after(1, [RowUpdate(1, SENT)]) == 0.5  # ran dry: wait for a wake-up or the poll
    assert pace.after(1, [RowUpdate(1, PENDING)]) == pytest.approx(0.1)  # the broker refused: back off
    assert pace.after(1, [RowUpdate(1, PENDING)]) == pytest.approx(0.2)
    assert pace.after(0, []) == 0.5  # and start over once it works


def test_the_relay_says_what_it_is_doing_in_the_consumers_words() -> None:
    pace = RelayPace(RelayPolicy())
    assert pace.state is State.STARTING  # no batch has run yet
    pace.unreachable(svclink.EventError("the broker refused the login"))
    assert pace.state is State.RECONNECTING
    pace.after(0, [])  # a batch ran, nothing to send: ready
    assert pace.state is State.CONSUMING
    pace.after(1, [RowUpdate(1, PENDING, "no broker")])
    assert pace.state is State.RECONNECTING
    pace.after(1, [RowUpdate(1, SENT)])
    assert pace.state is State.CONSUMING
    try:
        raise OSError("the database is unreachable")
    except OSError:
        pace.crashed()
    assert pace.state is State.RECONNECTING


def test_the_send_after_commit_pauses_after_a_failure_under_the_same_settings() -> None:
    gate, one, other = SendNowGate(pause=5.0), svclink.configure(), svclink.configure(service_name="b")
    assert gate.open(0.0, one)
    gate.failed(1.0, one)
    assert not gate.open(5.9, one) and gate.open(6.0, one)
    assert gate.open(2.0, other)
    gate.sent(7.0, other, RelayCounts(sent=1))
    assert gate.open(7.0, other)
    gate.sent(7.0, other, RelayCounts(pending=1))  # no confirm in time: as a failure
    assert not gate.open(8.0, other)
    gate.raised(20.0, one, OSError("down"))
    assert not gate.open(21.0, one)
    assert not SendNowGate().open(0.0, svclink.configure(outbox_send_after_commit=False))


def test_what_a_store_writes_for_a_batch_and_when_it_prunes() -> None:
    updates = [RowUpdate(1, SENT), RowUpdate(2, PENDING, "no confirm"), RowUpdate(3, SENT, "unroutable")]
    deleting, keeping = row_writes(updates, keep_sent=False), row_writes(updates, keep_sent=True)
    assert (deleting.deleted, deleting.marked, deleting.others) == ((1, 3), (), (updates[1],))
    assert (keeping.deleted, keeping.marked, keeping.others) == ((), (1, 3), (updates[1],))
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert RelayPolicy().prune_before(now) is None and not RelayPolicy().keeps_sent
    assert RelayPolicy(retention=60).prune_before(now) == now - timedelta(seconds=60)
    assert RelayCounts.of({SENT: 2, FAILED: 1}) == RelayCounts(sent=2, failed=1, pending=0)


def test_a_redis_claim_found_taken() -> None:
    key = redis_key("shipping", "e-1")
    assert key == "svclink:inbox:shipping:e-1"
    assert taken(b"done", key) is True  # handled: ack it
    assert taken(None, key) is False  # gone meanwhile: claim again
    with pytest.raises(EventInFlight):
        taken(b"running", key)
    with pytest.raises(EventInFlight):
        taken("running", key)
