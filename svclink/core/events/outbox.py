"""The transactional outbox, as decisions: what a row holds, and what becomes of it once sent.

``publish_on_commit`` (Django, SQLAlchemy) builds the message at call time, with the request
context bound then (request id, trace, signed caller), and stores it as a row in the caller's
transaction: :func:`outbox_row`. The relay reads pending rows in order of creation, turns each
back into the same message (:func:`stored_message`), publishes them with confirms, and writes
what :func:`verdict` says: sent, failed for good (with the reason), or still pending (it may
not have landed: sent again later, with the same event id). Nothing here touches a database
or a socket; the stores and the relay drivers do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import attrs

from ..errors import InvalidEvent, PublishError, PublishNacked, UnroutableError
from ..logs import logger
from ..settings import Settings
from .envelope import Event
from .handling import reconnect_delay
from .message import OutgoingMessage, Properties, prepare
from .publishing import Sending, publish_deadline
from .running import State

log = logger("svclink.outbox")

#: the tables of svclink's outbox and inbox (the Django models and the SQLAlchemy tables alike)
OUTBOX_TABLE = "svclink_outbox"
INBOX_TABLE = "svclink_inbox"
#: the PostgreSQL channel a new row is announced on (NOTIFY is sent when its transaction commits)
NOTIFY_CHANNEL = "svclink_outbox"

#: the states of an outbox row
PENDING, SENT, FAILED = "pending", "sent", "failed"
STATES = (PENDING, SENT, FAILED)

#: the longest event id, type, exchange or queue name a row holds
MAX_NAME = 255


@attrs.frozen
class OutboxRow:
    """The columns of one outbox row as ``publish_on_commit`` writes it."""

    event_id: str
    event_type: str
    exchange: str
    routing_key: str
    body: bytes
    #: the message's AMQP properties (headers included) as JSON
    properties: str
    created_at: datetime
    state: str = PENDING


@attrs.frozen
class StoredRow:
    """An outbox row as a store read it back for the relay."""

    id: int
    event_id: str
    exchange: str
    routing_key: str
    body: bytes
    properties: str


#: the columns a store reads back for the relay, in :class:`StoredRow`'s order
STORED_COLUMNS = tuple(field.name for field in attrs.fields(StoredRow))


@attrs.frozen
class RowUpdate:
    """What the relay writes back for one row once its publish has an outcome."""

    id: int
    state: str
    #: why a row failed for good, or why it is still pending (for ``svclink relay --status``)
    reason: str = ""


def _json_header(value: object) -> object:
    raise InvalidEvent(
        f"an outbox event's headers must be JSON values (str, number, bool, None, lists, dicts), "
        f"not {type(value).__name__}"
    )


def outbox_row(
    settings: Settings,
    event_type: str,
    data: Any,
    *,
    exchange: str | None,
    event_id: str | None,
    headers: Mapping[str, Any] | None,
    wall: float,
    layout: str | None = None,
) -> tuple[Event, OutboxRow]:
    """The event and the row for one ``publish_on_commit``, checked before any I/O (as ``publish`` checks).

    The message is built now, so the request context bound now travels with it; ``wall``
    is the caller's epoch clock.
    """
    occurred = datetime.fromtimestamp(wall, UTC)
    event, message = prepare(
        settings, event_type, data, exchange=exchange, event_id=event_id, occurred_at=occurred,
        wall=wall, headers=headers, layout=layout,
    )  # fmt: skip
    props = message.properties
    fields = {"headers": dict(props.headers), **props.basic()}
    for name in ("exchange", "routing_key"):
        if len(getattr(message, name)) > MAX_NAME:
            raise InvalidEvent(f"an outbox event's {name} must be at most {MAX_NAME} characters")
    assert props.message_id is not None  # prepare always sets it
    return event, OutboxRow(
        event_id=props.message_id,
        event_type=message.routing_key,
        exchange=message.exchange,
        routing_key=message.routing_key,
        body=message.body,
        properties=json.dumps(fields, default=_json_header, separators=(",", ":")),
        created_at=occurred,
    )


def stored_message(row: StoredRow) -> OutgoingMessage:
    """The message a row stands for, as ``publish_on_commit`` built it; :class:`InvalidEvent`
    when the row was changed into something that is not one."""
    try:
        fields = json.loads(row.properties)
        headers = fields.pop("headers")
        properties = Properties(headers=MappingProxyType(dict(headers)), **fields)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidEvent(f"outbox row {row.id} has garbled message properties: {exc}") from None
    return OutgoingMessage(
        exchange=row.exchange, routing_key=row.routing_key, body=bytes(row.body), properties=properties
    )


def verdict(row_id: int, error: PublishError | None, unroutable: str = "warn") -> RowUpdate:
    """What a publish's outcome makes of its row.

    Confirmed: sent. Refused for good (nacked; unroutable under ``unroutable="raise"``):
    failed, with the reason, and not retried hot. Unroutable under ``"warn"``: sent, with a
    warning, as ``publish`` reports it (no queue wanted it). Anything else (no confirm in
    time, the connection lost after the send) may or may not have landed: the row stays
    pending and is sent again, with the same event id.
    """
    if error is None:
        return RowUpdate(row_id, SENT)
    if isinstance(error, UnroutableError):
        return RowUpdate(row_id, FAILED if unroutable == "raise" else SENT, str(error))
    if isinstance(error, PublishNacked):
        return RowUpdate(row_id, FAILED, str(error))
    return RowUpdate(row_id, PENDING, str(error))


@attrs.frozen
class Batch:
    """Claimed rows split into the messages to send and the rows that failed already."""

    rows: tuple[StoredRow, ...]
    messages: tuple[OutgoingMessage, ...]
    #: rows that are not a message any more fail at once: sending them again cannot help
    invalid: tuple[RowUpdate, ...]

    def sending(self, settings: Settings, timeout: float | None, now: float) -> Sending:
        """The publish of the messages, due ``timeout`` seconds from ``now`` (None: the
        ``publish_timeout`` setting), as ``publish`` bounds its own."""
        return Sending.of_messages(self.messages, publish_deadline(settings, timeout, now))

    def outcomes(self, errors: Mapping[int, PublishError], unroutable: str) -> list[RowUpdate]:
        """The updates once the messages were sent; ``errors`` by position, as ``Sending.errors``
        has them; ``unroutable`` is the setting (see :func:`verdict`)."""
        updates = (verdict(row.id, errors.get(i), unroutable) for i, row in enumerate(self.rows))
        return [*self.invalid, *updates]

    def unsent(self, error: Exception) -> list[RowUpdate]:
        """The updates when nothing could be sent (no broker): every row stays pending."""
        return [*self.invalid, *(RowUpdate(row.id, PENDING, str(error)) for row in self.rows)]


def batch(rows: Sequence[StoredRow]) -> Batch:
    """The messages of claimed ``rows``, in their order."""
    sendable, messages, invalid = [], [], []
    for row in rows:
        try:
            messages.append(stored_message(row))
            sendable.append(row)
        except InvalidEvent as exc:
            invalid.append(RowUpdate(row.id, FAILED, str(exc)))
    return Batch(tuple(sendable), tuple(messages), tuple(invalid))


def log_updates(updates: Sequence[RowUpdate]) -> None:
    """A warning for each row that was not sent, the same from both relays."""
    for update in updates:
        if update.state != SENT or update.reason:
            log.warning("outbox row %d %s: %s", update.id, update.state, update.reason)


@attrs.frozen
class RowWrites:
    """What a store writes for one batch's updates, the same in every store: a sent row is
    marked (kept for the ``outbox_retention``) or deleted at once; any other gets its state and
    reason."""

    marked: tuple[int, ...]
    deleted: tuple[int, ...]
    others: tuple[RowUpdate, ...]


def row_writes(updates: Sequence[RowUpdate], keep_sent: bool) -> RowWrites:
    """The writes for ``updates``; ``keep_sent`` is :attr:`RelayPolicy.keeps_sent`."""
    sent = tuple(u.id for u in updates if u.state == SENT)
    others = tuple(u for u in updates if u.state != SENT)
    return RowWrites(marked=sent if keep_sent else (), deleted=() if keep_sent else sent, others=others)


DEFAULT_BATCH_SIZE = 200


@attrs.frozen
class RelayPolicy:
    """How a relay paces itself."""

    #: rows claimed and published (pipelined, one wait for their confirms) at a time
    batch_size: int = DEFAULT_BATCH_SIZE
    #: seconds between looks at the table when no wake-up comes (PostgreSQL wakes it on commit)
    poll_interval: float = 1.0
    #: seconds a sent row is kept (0: deleted once confirmed)
    retention: float = 0.0

    @property
    def keeps_sent(self) -> bool:
        """Whether a confirmed row stays, marked sent (a retention), rather than being deleted."""
        return self.retention > 0

    def prune_before(self, now: datetime) -> datetime | None:
        """Sent rows sent before this go when the relay is idle (``now`` is the wall clock);
        None when no sent row is kept."""
        return now - timedelta(seconds=self.retention) if self.keeps_sent else None


def relay_policy(settings: Settings, batch_size: int | None = None) -> RelayPolicy:
    """The relay's pacing from the settings (``outbox_poll_interval``, ``outbox_retention``)."""
    return RelayPolicy(
        batch_size=batch_size or DEFAULT_BATCH_SIZE,
        poll_interval=settings.outbox_poll_interval,
        retention=settings.outbox_retention,
    )


@attrs.define
class RelayPace:
    """The relay's next wait after each batch: none while a full batch came back all sent,
    the poll interval when the table ran dry, a growing backoff while the broker refuses.

    It also says what the relay is doing, for a worker's ``/readyz`` (in the consumers'
    words): ``starting`` until a batch has run with the broker reached, ``consuming`` while
    batches run and send, ``reconnecting`` from a batch that failed (the broker down or
    refusing the login, the database unreachable, rows left pending) until one works again.
    """

    policy: RelayPolicy
    failures: int = 0
    state: State = State.STARTING

    def after(self, claimed: int, updates: Sequence[RowUpdate]) -> float:
        """The wait after a batch that claimed ``claimed`` rows and wrote ``updates`` (each row
        not sent is warned about)."""
        log_updates(updates)
        if any(u.state == PENDING for u in updates):
            return self.unavailable()
        self.failures = 0
        self.state = State.CONSUMING
        return 0.0 if claimed >= self.policy.batch_size else self.policy.poll_interval

    def unavailable(self) -> float:
        """Nothing could be sent (no broker, or confirms missing): wait longer each time in a row."""
        self.failures += 1
        self.state = State.RECONNECTING
        return reconnect_delay(self.failures)

    def unreachable(self, error: Exception) -> float:
        """The publisher's connection could not be opened (the broker down, or refusing the
        login): one warning line (a traceback would only repeat it at every retry), and
        waited for as when nothing could be sent."""
        log.warning("outbox relay: cannot reach the broker (%s); retrying", error)
        return self.unavailable()

    def crashed(self) -> float:
        """A batch raised (the database, say): logged with its traceback (call it in the
        ``except`` block), and waited for as when nothing could be sent."""
        log.exception("outbox relay: a batch failed; retrying")
        return self.unavailable()


@attrs.frozen
class RelayCounts:
    """What a relay did, or (``svclink relay --status``) what a table holds, by state."""

    sent: int = 0
    failed: int = 0
    pending: int = 0

    @classmethod
    def of(cls, by_state: Mapping[str, int]) -> RelayCounts:
        """The counts of a table from its number of rows by state (a state with none may be missing)."""
        return cls(
            sent=by_state.get(SENT, 0), failed=by_state.get(FAILED, 0), pending=by_state.get(PENDING, 0)
        )

    def add(self, updates: Sequence[RowUpdate]) -> RelayCounts:
        return RelayCounts(
            sent=self.sent + sum(u.state == SENT for u in updates),
            failed=self.failed + sum(u.state == FAILED for u in updates),
            pending=self.pending + sum(u.state == PENDING for u in updates),
        )


#: seconds the send right after a commit waits for its confirm before leaving the row to the relay
SEND_NOW_TIMEOUT = 2.0


@attrs.define
class SendNowGate:
    """Whether to try the send right after a commit: not when the ``outbox_send_after_commit``
    setting is off, nor for ``pause`` seconds after one failed under the same settings, so that
    while the broker is down each commit is not held up by a send that will fail too (the relay
    sends those rows when the broker is back)."""

    pause: float = 5.0
    closed_until: float = -1.0
    closed_for: Settings | None = None

    def open(self, now: float, settings: Settings) -> bool:
        if not settings.outbox_send_after_commit:
            return False
        return settings is not self.closed_for or now >= self.closed_until

    def failed(self, now: float, settings: Settings) -> None:
        self.closed_until = now + self.pause
        self.closed_for = settings

    def sent(self, now: float, settings: Settings, counts: RelayCounts) -> None:
        """The send came back: a row still pending (no broker, no confirm in time) counts as a failure."""
        if counts.pending:
            self.failed(now, settings)

    def raised(self, now: float, settings: Settings, error: Exception) -> None:
        """The send raised: warned about, never raised further (the relay sends the rows), and a failure."""
        log.warning("outbox: send after commit failed (%s); the relay will send it", error)
        self.failed(now, settings)


@attrs.frozen
class FailedRow:
    """An outbox row refused for good, as ``--status`` reports it."""

    id: int
    event_type: str
    event_id: str
    reason: str


#: the columns ``--status`` reads for a failed row, in :class:`FailedRow`'s order
FAILED_COLUMNS = tuple(field.name for field in attrs.fields(FailedRow))

#: failed rows ``--status`` lists (the counts cover them all)
STATUS_FAILURES = 20


def status_lines(counts: RelayCounts, failures: Sequence[FailedRow]) -> list[str]:
    """What ``svclink relay --status`` and ``manage.py svclink_relay --status`` print."""
    lines = [f"pending {counts.pending}", f"sent {counts.sent}", f"failed {counts.failed}"]
    lines += [f"failed row {f.id}: {f.event_type} {f.event_id}: {f.reason}" for f in failures]
    return lines
