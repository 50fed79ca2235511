"""svclink's outbox and inbox tables for an application's SQLAlchemy ``MetaData``.

Add them to the metadata your migrations (Alembic) or ``metadata.create_all`` build from:
``outbox_table(Base.metadata)``, ``inbox_table(Base.metadata)``. Their columns are those of
the Django models, so one relay serves either.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ...core.events.outbox import INBOX_TABLE, MAX_NAME, OUTBOX_TABLE, PENDING

#: a BIGINT primary key that SQLite still numbers by itself
_ID = BigInteger().with_variant(Integer(), "sqlite")


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table in ``metadata`` (added on the first call, the same table after)."""
    if OUTBOX_TABLE in metadata.tables:
        return metadata.tables[OUTBOX_TABLE]
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("event_id", String(MAX_NAME), nullable=False),
        Column("event_type", String(MAX_NAME), nullable=False),
        Column("exchange", String(MAX_NAME), nullable=False),
        Column("routing_key", String(MAX_NAME), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("properties", Text, nullable=False),
        Column("state", String(16), nullable=False, default=PENDING),
        Column("reason", Text, nullable=False, default=""),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        Index("svclink_outbox_state_id", "state", "id"),
    )


def inbox_table(metadata: MetaData) -> Table:
    """The inbox table in ``metadata`` (added on the first call, the same table after)."""
    if INBOX_TABLE in metadata.tables:
        return metadata.tables[INBOX_TABLE]
    return Table(
        INBOX_TABLE,
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("queue", String(MAX_NAME), nullable=False),
        Column("event_id", String(MAX_NAME), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("queue", "event_id", name="svclink_inbox_once"),
        Index("svclink_inbox_handled_at", "handled_at"),
    )


#: the tables svclink's own statements use (the application's copies have the same columns)
OUTBOX = outbox_table(MetaData())
INBOX = inbox_table(MetaData())
