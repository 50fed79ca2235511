"""The databases of the outbox and inbox tests: the Django project's PostgreSQL alias ("pg") and a
SQLAlchemy database with the app's tables, each made once per run and dropped after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from ..django_project import setup
from ..outbox_support import create_database, drop_database, pg_url, scratch_database
from .shop_tables import metadata

setup()


@pytest.fixture(scope="session")
def django_pg() -> Iterator[str]:
    """The Django project's PostgreSQL database ("pg"), migrated; its name."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    name = settings.DATABASES["pg"]["NAME"]
    create_database(name)
    try:
        call_command("migrate", database="pg", verbosity=0, interactive=False)
        yield name
    finally:
        connections["pg"].close()
        drop_database(name)


@pytest.fixture(scope="session")
def sql_database() -> Iterator[str]:
    """A PostgreSQL database with the SQLAlchemy application's tables; its name."""
    with scratch_database() as name:
        engine = create_engine(pg_url(name, "+psycopg"))
        metadata.create_all(engine)
        engine.dispose()
        yield name
