"""``manage.py svclink_prune_inbox``: forget the events deduplicating handlers handled long ago.

Rows older than ``--older-than`` seconds (default: the ``inbox_retention`` setting, 7 days)
are deleted. Run it from cron; an event redelivered after its row is gone is handled again,
so keep rows longer than any message can wait in a queue.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS

from svclink.contrib.django.inbox import DjangoInbox
from svclink.core.settings import get_settings


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped
    help = "Delete inbox rows older than the inbox_retention setting (or --older-than seconds)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than", type=float, default=None, help="seconds (default: inbox_retention)"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias of the inbox")

    def handle(self, *args: Any, **options: Any) -> None:
        age = options["older_than"] or get_settings().inbox_retention
        deleted = DjangoInbox(options["database"]).prune(datetime.now(UTC) - timedelta(seconds=age))
        self.stdout.write(f"pruned {deleted} inbox rows older than {age:g} s")
