"""``svclink dead list|show|replay|purge QUEUE``: work a consumer's dead-letter queue.

QUEUE is the consumer's queue (or its ``.dead`` queue). ``list`` and ``show`` leave the
queue as it was; ``replay`` publishes dead letters again to where they were first
published, as first attempts, and removes each only once the broker has confirmed it;
``purge`` deletes them all, after asking (``--yes`` does not ask).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.events.dead import DeadEvent


def add_parser(commands: Any) -> None:
    dead = commands.add_parser("dead", help="list, show, replay or purge a consumer's dead letters")
    actions = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one line per dead letter")
    listing.add_argument("queue", metavar="QUEUE")
    listing.add_argument("--limit", type=int, help="at most this many")
    show = actions.add_parser("show", help="one dead letter's headers and body")
    show.add_argument("queue", metavar="QUEUE")
    show.add_argument("event_id", metavar="EVENT_ID")
    replay = actions.add_parser("replay", help="publish dead letters again, as first attempts")
    replay.add_argument("queue", metavar="QUEUE")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--event-id", help="the one to replay")
    which.add_argument("--all", action="store_true", help="every one (up to --limit)")
    replay.add_argument("--limit", type=int, help="at most this many")
    purge = actions.add_parser("purge", help="delete every dead letter")
    purge.add_argument("queue", metavar="QUEUE")
    purge.add_argument("--yes", action="store_true", help="do not ask")


def _line(dead: DeadEvent) -> str:
    when = dead.dead_lettered_at.isoformat(timespec="seconds") if dead.dead_lettered_at else "-"
    return "\t".join(
        [
            dead.event_id or "-",
            dead.event_type or "-",
            dead.reason or "-",
            str(dead.attempts),
            when,
            dead.error or "-",
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Run one ``svclink dead`` action; the exit status."""
    from ..sync import DeadLetters

    dead = DeadLetters(args.queue)
    if args.dead_command == "list":
        print("event id\ttype\treason\tattempts\tdead-lettered at\terror")
        for entry in dead.list(limit=args.limit):
            print(_line(entry))
        return 0
    if args.dead_command == "show":
        found = dead.show(args.event_id)
        if found is None:
            print(f"svclink: no dead letter {args.event_id!r} in {dead.queue}", file=sys.stderr)
            return 1
        print(json.dumps({k: _plain(v) for k, v in found.headers.items()}, indent=2, ensure_ascii=False))
        print(found.body_text())
        return 0
    if args.dead_command == "replay":
        replayed = dead.replay(args.event_id, limit=args.limit)
        for entry in replayed:
            print(
                f"replayed {entry.event_id} to exchange {entry.exchange!r}, routing key {entry.routing_key!r}"
            )
        if args.event_id and not replayed:
            print(f"svclink: no dead letter {args.event_id!r} in {dead.queue}", file=sys.stderr)
            return 1
        print(f"{len(replayed)} replayed", file=sys.stderr)
        return 0
    return _purge(dead, args.yes)


def _purge(dead: Any, yes: bool) -> int:
    if not yes:
        answer = input(f"delete all {dead.count()} dead letters in {dead.queue}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    print(f"{dead.purge()} deleted from {dead.queue}")
    return 0


def _plain(value: Any) -> Any:
    """A header value as JSON can show it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
