"""The SQLAlchemy shop's tables: orders, the shipments its consumer makes, and svclink's outbox and inbox."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table

from svclink.contrib.sqlalchemy import inbox_table, outbox_table

metadata = MetaData()
orders = Table("orders", metadata, Column("number", Integer, primary_key=True, autoincrement=False))
shipments = Table(
    "shipments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_number", Integer, nullable=False),
    Column("event_id", String(255), nullable=False),
)
outbox_table(metadata)
inbox_table(metadata)
