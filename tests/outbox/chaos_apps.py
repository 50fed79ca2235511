"""The processes of the outbox chaos run (bench/outbox_chaos.py): a shop that writes orders, its
relay, and a shipping consumer with an inbox, on Django or on SQLAlchemy asyncio.

``python -m tests.outbox.chaos_apps ROLE KIND [N]``; ROLE is ``migrate``, ``produce``, ``relay``
or ``consume``, KIND ``django`` (sync consumer, Django inbox) or ``sqlalchemy`` (AsyncSession,
aio relay, aio consumer with the SQLAlchemy inbox). The database is ``SHOP_PG_DB``, the
broker ``SVCLINK_AMQP_URL``, the exchange and queue ``CHAOS_EXCHANGE`` and ``CHAOS_QUEUE``; the
consumer keeps the file ``CHAOS_MARKER`` while a handler runs, so that it can be killed mid-handler.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

EXCHANGE = os.environ.get("CHAOS_EXCHANGE", "chaos.shop")
QUEUE = os.environ.get("CHAOS_QUEUE", "chaos.shipping")
MARKER = Path(os.environ.get("CHAOS_MARKER", "/tmp/svclink-chaos-handling"))
#: every tenth order is rolled back on purpose
ROLLED_BACK_EVERY = 10
#: what a handler takes besides its write, so that a kill can find one running
HANDLER_SECONDS = 0.01


class RolledBack(Exception):
    """The order's transaction fails after publish_on_commit."""


def rolled_back(number: int) -> bool:
    return number % ROLLED_BACK_EVERY == ROLLED_BACK_EVERY - 1


def database_url(driver: str = "+psycopg") -> str:
    return f"postgresql{driver}://postgres@127.0.0.1:5432/{os.environ['SHOP_PG_DB']}"


def progress(number: int) -> None:
    print(f"order {number}", flush=True)


# -- Django ---------------------------------------------------------------------------------


def django_main(role: str, count: int, interval: float) -> None:
    from ..django_project import setup

    setup()
    from django.core.management import call_command
    from django.db import transaction

    if role == "migrate":
        call_command("migrate", database="pg", verbosity=0, interactive=False)
        return
    if role == "relay":
        call_command("svclink_relay", "--database", "pg")
        return
    from svclink.contrib.django import publish_on_commit

    from ..django_project.shop.models import Order, Shipment

    if role == "produce":
        for number in range(count):
            try:
                with transaction.atomic(using="pg"):
                    Order.objects.using("pg").create(number=number)
                    publish_on_commit("order.created", {"number": number}, exchange=EXCHANGE, using="pg")
                    if rolled_back(number):
                        raise RolledBack
            except RolledBack:
                pass
            progress(number)
            time.sleep(interval)
        return

    import svclink.sync
    from svclink.contrib.django import DjangoInbox

    consumer = svclink.sync.EventConsumer(
        QUEUE, exchange=EXCHANGE, retry_delays=[0.2], dedupe=DjangoInbox("pg")
    )

    @consumer.on("order.created")
    def ship(event: Any) -> None:
        MARKER.touch()
        Shipment.objects.using("pg").create(order_number=event.data["number"], event_id=event.event_id)
        time.sleep(HANDLER_SECONDS)
        MARKER.unlink(missing_ok=True)

    print("consuming", flush=True)
    consumer.run()


# -- SQLAlchemy asyncio -----------------------------------------------------------------------


async def sqlalchemy_main(role: str, count: int, interval: float) -> None:
    from sqlalchemy import create_engine, insert
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

    from svclink.contrib.sqlalchemy import AsyncSqlInbox, AsyncSqlOutbox, inbox_session, publish_on_commit

    from .shop_tables import metadata, orders, shipments

    if role == "migrate":
        engine = create_engine(database_url())
        metadata.create_all(engine)
        engine.dispose()
        return
    if role == "relay":
        from svclink.aio.relay import Relay

        await Relay(AsyncSqlOutbox(database_url())).run()
        return
    engine = create_async_engine(database_url())
    if role == "produce":
        for number in range(count):
            try:
                async with AsyncSession(engine) as session, session.begin():
                    await session.execute(insert(orders).values(number=number))
                    await publish_on_commit(session, "order.created", {"number": number}, exchange=EXCHANGE)
                    if rolled_back(number):
                        raise RolledBack
            except RolledBack:
                pass
            progress(number)
            await asyncio.sleep(interval)
        from svclink.contrib.sqlalchemy import outbox

        while outbox._sending:  # the sends after commit still under way
            await asyncio.sleep(0.01)
        return

    import svclink.aio

    consumer = svclink.aio.EventConsumer(
        QUEUE, exchange=EXCHANGE, retry_delays=[0.2], dedupe=AsyncSqlInbox(async_sessionmaker(engine))
    )

    @consumer.on("order.created")
    async def ship(event: Any) -> None:
        MARKER.touch()
        values = {"order_number": event.data["number"], "event_id": event.event_id}
        await inbox_session().execute(insert(shipments).values(**values))
        await asyncio.sleep(HANDLER_SECONDS)
        MARKER.unlink(missing_ok=True)

    print("consuming", flush=True)
    await consumer.run()


def main(argv: list[str]) -> None:
    role, kind = argv[0], argv[1]
    count = int(argv[2]) if len(argv) > 2 else 0
    interval = float(argv[3]) if len(argv) > 3 else 0.0
    if kind == "django":
        django_main(role, count, interval)
    else:
        asyncio.run(sqlalchemy_main(role, count, interval))


if __name__ == "__main__":
    main(sys.argv[1:])
