"""``svclink relay``: send the pending events of an outbox table, with confirms (and ``svclink
prune-inbox``: forget the events deduplicating handlers handled long ago).

The table is the one ``publish_on_commit`` writes, from SQLAlchemy (``outbox_table``) or
Django (svclink's migration): ``--database-url`` names its database. ``--once`` sends what
is pending and exits (cron, tests); ``--status`` prints the rows by state and the failed
ones with their reasons. Otherwise it runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.events.outbox import relay_policy, status_lines
from ..core.settings import get_settings


def add_parser(commands: Any) -> None:
    relay = commands.add_parser("relay", help="send the outbox's pending events (publish_on_commit)")
    relay.add_argument(
        "--database-url", required=True, metavar="URL", help="the outbox's database (SQLAlchemy URL)"
    )
    relay.add_argument("--once", action="store_true", help="send what is pending, then exit")
    relay.add_argument("--status", action="store_true", help="print the rows by state and the failed ones")
    relay.add_argument("--batch-size", type=int, default=None, help="rows sent per wait for confirms")


def add_prune_parser(commands: Any) -> None:
    prune = commands.add_parser("prune-inbox", help="delete inbox rows older than inbox_retention")
    prune.add_argument(
        "--database-url", required=True, metavar="URL", help="the inbox's database (SQLAlchemy URL)"
    )
    prune.add_argument("--older-than", type=float, default=None, help="seconds (default: inbox_retention)")


def prune(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import sessionmaker

    from ..contrib.sqlalchemy import SqlInbox
    from ..contrib.sqlalchemy.engines import engine_of

    age = args.older_than or get_settings().inbox_retention
    engine = engine_of(args.database_url)
    try:
        deleted = SqlInbox(sessionmaker(engine)).prune(datetime.now(UTC) - timedelta(seconds=age))
    finally:
        engine.dispose()
    print(f"pruned {deleted} inbox rows older than {age:g} s")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..contrib.sqlalchemy import SqlOutbox
    from ..sync.relay import Relay

    store = SqlOutbox(args.database_url)
    try:
        if args.status:
            print("\n".join(status_lines(store.status(), store.failures())))
            return 0
        relay = Relay(store, policy=relay_policy(get_settings(), args.batch_size))
        if args.once:
            counts = relay.run_once()
            print(f"sent {counts.sent}, failed {counts.failed}, pending {counts.pending}")
            return 0
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: relay.stop())
        relay.run()
        return 0
    finally:
        store.close()
        store.engine.dispose()
