"""The transactional outbox for Django: ``publish_on_commit`` and the store the relay reads.

.. code-block:: python

    from django.db import transaction
    from svclink.contrib.django import publish_on_commit

    with transaction.atomic():
        order = Order.objects.create(...)
        publish_on_commit("order.created", {"order_id": order.pk})
    # committed: the event is sent now (best effort) and by the relay for sure;
    # rolled back: it is never sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import attrs
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count

from ...core.events.envelope import Event
from ...core.events.outbox import (
    FAILED,
    FAILED_COLUMNS,
    PENDING,
    SENT,
    STATUS_FAILURES,
    STORED_COLUMNS,
    FailedRow,
    RelayCounts,
    RowUpdate,
    StoredRow,
    outbox_row,
    row_writes,
)
from ...core.settings import get_settings
from ...sync.relay import Send, send_after_commit
from .._postgres import NOTIFY_SQL, Listener
from .models import OutboxMessage


def publish_on_commit(
    event_type: str,
    data: Any,
    *,
    exchange: str | None = None,
    event_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    format: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> Event:
    """Publish an event if, and only if, the current transaction on ``using`` commits.

    The event is written to the outbox table in the caller's transaction (in its own one in
    autocommit), with the request context bound now. After the commit it is sent at once
    (best effort, without waiting for the relay); the relay (``manage.py svclink_relay``)
    sends it for sure. Bad arguments raise :class:`~svclink.InvalidEvent` before anything is
    written, as :meth:`publish` does; ``format`` is publish's (``"flat"`` for hand-written
    consumers). Returns the event as it will be sent.
    """
    event, row = outbox_row(
        get_settings(), event_type, data, exchange=exchange, event_id=event_id, headers=headers,
        wall=time.time(), layout=format,
    )  # fmt: skip
    with transaction.atomic(using=using):
        saved = OutboxMessage.objects.using(using).create(**attrs.asdict(row))
        connection = connections[using]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(NOTIFY_SQL)
    transaction.on_commit(partial(send_after_commit, DjangoOutbox(using), [saved.pk]), using=using)
    return event


class DjangoOutbox:
    """The outbox table of database ``using``, for the relay (``manage.py svclink_relay``)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using
        self._listener: Listener | None = None

    def _rows(self) -> Any:
        return OutboxMessage.objects.using(self.using)

    def relay_batch(
        self, limit: int, send: Send, *, ids: Sequence[int] | None = None, keep_sent: bool
    ) -> int:
        with transaction.atomic(using=self.using):
            pending = self._rows().filter(state=PENDING).order_by("id")
            if ids is not None:
                pending = pending.filter(pk__in=list(ids))
            if connections[self.using].features.has_select_for_update_skip_locked:
                pending = pending.select_for_update(skip_locked=True)
            rows = [StoredRow(*values) for values in pending.values_list(*STORED_COLUMNS)[:limit]]
            if rows:
                self._record(send(rows), keep_sent)
        return len(rows)

    def _record(self, updates: Sequence[RowUpdate], keep_sent: bool) -> None:
        writes = row_writes(updates, keep_sent)
        if writes.marked:
            self._rows().filter(pk__in=writes.marked).update(state=SENT, sent_at=datetime.now(UTC))
        if writes.deleted:
            self._rows().filter(pk__in=writes.deleted).delete()
        for update in writes.others:
            self._rows().filter(pk=update.id).update(state=update.state, reason=update.reason)

    def wait(self, timeout: float) -> None:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            time.sleep(timeout)
            return
        if self._listener is None:
            self._listener = Listener(
                lambda: connection.get_new_connection(connection.get_connection_params())
            )
        self._listener.wait(timeout)

    def status(self) -> RelayCounts:
        return RelayCounts.of(dict(self._rows().values_list("state").annotate(n=Count("id")).order_by()))

    def failures(self, limit: int = STATUS_FAILURES) -> list[FailedRow]:
        failed = self._rows().filter(state=FAILED).order_by("id")
        return [FailedRow(*v) for v in failed.values_list(*FAILED_COLUMNS)[:limit]]

    def prune_sent(self, before: datetime) -> int:
        deleted, _ = self._rows().filter(state=SENT, sent_at__lt=before).delete()
        return int(deleted)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        connections[self.using].close()
