"""SQLAlchemy integration (sync and asyncio): the transactional outbox and the inbox.

.. code-block:: python

    from svclink.contrib.sqlalchemy import outbox_table, inbox_table, publish_on_commit

    outbox_table(Base.metadata)   # the tables, for create_all or Alembic
    inbox_table(Base.metadata)

Needs ``svclink[sqlalchemy]`` (``svclink[outbox]`` adds psycopg for PostgreSQL).
"""

from ..._extras import require

require("sqlalchemy", "sqlalchemy")

from .inbox import AsyncSqlInbox, SqlInbox, inbox_session  # noqa: E402
from .outbox import AsyncSqlOutbox, SqlOutbox, publish_on_commit  # noqa: E402
from .tables import inbox_table, outbox_table  # noqa: E402

__all__ = [
    "AsyncSqlInbox",
    "AsyncSqlOutbox",
    "SqlInbox",
    "SqlOutbox",
    "inbox_session",
    "inbox_table",
    "outbox_table",
    "publish_on_commit",
]
