"""The inbox for Django: a deduplicating handler runs inside ``transaction.atomic()``, with the row
that records its event, so both commit together or neither does.

.. code-block:: python

    @consumer.on("order.created", dedupe=True)   # DjangoInbox() when the app is installed
    def ship(event):
        Shipment.objects.create(order_id=event.data["order_id"])
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction

from ...core.logs import logger
from .models import InboxMessage

log = logger("svclink.events")


class DjangoInbox:
    """Records handled events in svclink's inbox table on database ``using``.

    The handler's writes on ``using`` share the inbox row's transaction: if the handler
    raises, neither is kept and the event is retried; if it returns, both commit before the
    message is acked. A second delivery of the event (a resend, or a redelivery after a
    crash between the commit and the ack) finds the row and is acked without running the
    handler. Two consumers given the same event at once: the second waits on the first's
    row, then skips it (or runs, if the first rolled back).
    """

    asynchronous = False

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def once(self, queue: str, event_id: str, call: Callable[[], Any]) -> bool:
        rows = InboxMessage.objects.using(self.using)
        with transaction.atomic(using=self.using):
            try:
                with transaction.atomic(using=self.using):  # a savepoint: a duplicate leaves the rest usable
                    rows.create(queue=queue, event_id=event_id, handled_at=datetime.now(UTC))
            except IntegrityError:
                return False
            call()
        return True

    def prune(self, before: datetime) -> int:
        """Forget the events handled before ``before``; answers how many rows went."""
        deleted, _ = InboxMessage.objects.using(self.using).filter(handled_at__lt=before).delete()
        return int(deleted)
