"""Engines from what a user hands svclink: an engine, a connection, or a database URL.

A plain ``postgresql://`` URL means psycopg 3 (``svclink[outbox]`` installs it), for the
sync and the asyncio engine alike.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import Connection

_PLAIN_POSTGRES = ("postgresql://", "postgres://")


def _psycopg(url: str) -> str:
    for plain in _PLAIN_POSTGRES:
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def engine_of(bind: Engine | Connection | str) -> Engine:
    """The engine of ``bind``; a URL makes a new one."""
    if isinstance(bind, str):
        return create_engine(_psycopg(bind))
    if isinstance(bind, Connection):
        return bind.engine
    return bind


def async_url(url: str) -> str:
    """The URL for an asyncio engine (psycopg 3 serves PostgreSQL in both)."""
    return _psycopg(url)
