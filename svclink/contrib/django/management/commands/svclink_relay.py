"""``manage.py svclink_relay``: send the outbox's pending events, with confirms.

``--once`` sends what is pending and exits (for cron and tests); ``--status`` prints the
rows by state and exits. Otherwise it runs until SIGTERM or Ctrl-C, waking on each commit
on PostgreSQL (LISTEN/NOTIFY) and polling every ``outbox_poll_interval`` seconds elsewhere.
"""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS

from svclink.contrib.django.outbox import DjangoOutbox
from svclink.core.events.outbox import relay_policy, status_lines
from svclink.core.settings import get_settings
from svclink.sync.relay import Relay


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped
    help = "Send the events publish_on_commit wrote to the outbox, with publisher confirms."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="send what is pending, then exit")
        parser.add_argument("--status", action="store_true", help="print the outbox rows by state, then exit")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias of the outbox")
        parser.add_argument("--batch-size", type=int, default=None, help="rows sent per confirm wait")

    def handle(self, *args: Any, **options: Any) -> None:
        store = DjangoOutbox(options["database"])
        if options["status"]:
            self.stdout.write("\n".join(status_lines(store.status(), store.failures())))
            return
        relay = Relay(store, policy=relay_policy(get_settings(), options["batch_size"]))
        try:
            if options["once"]:
                counts = relay.run_once()
                self.stdout.write(f"sent {counts.sent}, failed {counts.failed}, pending {counts.pending}")
                return
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: relay.stop())
            relay.run()
        finally:
            store.close()
