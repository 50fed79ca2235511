"""PostgreSQL and Redis for the outbox and inbox tests: databases of their own, made and dropped here.

Each test run uses databases named with a random suffix, so runs of other developers and
CI on the same server never collide. A server that does not answer fails the test (CI
starts them through scripts/test); nothing here is skipped.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def pg_url(name: str, driver: str = "") -> str:
    """The URL of database ``name`` (``driver``: ``+psycopg`` for SQLAlchemy)."""
    return f"postgresql{driver}://postgres@127.0.0.1:5432/{name}"


def create_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(prefix: str = "svclink_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block; dropped after it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


def query(name: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` run on database ``name`` from outside svclink."""
    with psycopg.connect(pg_url(name)) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []
