"""svclink's tables in a Django project: the outbox (events waiting for the relay) and the inbox
(event ids deduplicating handlers have handled). ``manage.py migrate`` creates them.

The columns match :mod:`svclink.contrib.sqlalchemy`'s tables, so ``svclink relay
--database-url`` can relay a Django project's outbox too.
"""

from __future__ import annotations

from django.db import models

from ...core.events.outbox import INBOX_TABLE, MAX_NAME, OUTBOX_TABLE, PENDING, STATES


class OutboxMessage(models.Model):  # type: ignore[misc]  # Django is untyped
    """One event written by ``publish_on_commit``, with the message built at that moment."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.CharField(max_length=MAX_NAME)
    event_type = models.CharField(max_length=MAX_NAME)
    exchange = models.CharField(max_length=MAX_NAME)
    routing_key = models.CharField(max_length=MAX_NAME)
    body = models.BinaryField()
    properties = models.TextField()
    state = models.CharField(max_length=16, default=PENDING, choices=[(s, s) for s in STATES])
    reason = models.TextField(default="", blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = OUTBOX_TABLE
        indexes = [models.Index(fields=["state", "id"], name="svclink_outbox_state_id")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.state})"


class InboxMessage(models.Model):  # type: ignore[misc]  # Django is untyped
    """An event a deduplicating handler of ``queue`` has handled (committed with the handler's writes)."""

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(max_length=MAX_NAME)
    event_id = models.CharField(max_length=MAX_NAME)
    handled_at = models.DateTimeField()

    class Meta:
        db_table = INBOX_TABLE
        constraints = [models.UniqueConstraint(fields=["queue", "event_id"], name="svclink_inbox_once")]
        indexes = [models.Index(fields=["handled_at"], name="svclink_inbox_handled_at")]

    def __str__(self) -> str:
        return f"{self.queue} {self.event_id}"
