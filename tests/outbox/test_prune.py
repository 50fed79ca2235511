"""Old inbox rows are pruned by age: ``manage.py svclink_prune_inbox`` and ``svclink prune-inbox``."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import call_command

import svclink
from svclink.cli import main

from ..outbox_support import pg_url, query


def seed(database: str) -> str:
    """Three inbox rows on a queue of the test's own: handled 10 days, 2 days and a minute ago."""
    queue = f"prune.{uuid.uuid4().hex[:8]}"
    for age, name in (("10 days", "old"), ("2 days", "recent"), ("1 minute", "new")):
        values = f"('{queue}', '{name}', now() - interval '{age}')"
        query(database, f"INSERT INTO svclink_inbox (queue, event_id, handled_at) VALUES {values}")
    return queue


def kept(database: str, queue: str) -> list[str]:
    rows = query(database, f"SELECT event_id FROM svclink_inbox WHERE queue = '{queue}' ORDER BY handled_at")
    return [str(r[0]) for r in rows]


def test_the_django_command_prunes_rows_older_than_the_retention(django_pg: str) -> None:
    queue = seed(django_pg)
    svclink.configure(inbox_retention=7 * 86400)
    out = io.StringIO()
    call_command("svclink_prune_inbox", "--database", "pg", stdout=out)
    assert out.getvalue().startswith("pruned ") and kept(django_pg, queue) == ["recent", "new"]
    call_command("svclink_prune_inbox", "--database", "pg", "--older-than", "3600", stdout=out)
    assert kept(django_pg, queue) == ["new"]


def test_the_cli_prunes_rows_older_than_the_retention(
    sql_database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = seed(sql_database)
    monkeypatch.setenv("SVCLINK_INBOX_RETENTION", "86400")  # the command reads the environment's settings
    assert main(["prune-inbox", "--database-url", pg_url(sql_database)]) == 0
    assert capsys.readouterr().out.startswith("pruned ")
    assert kept(sql_database, queue) == ["new"]
