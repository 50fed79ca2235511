"""The test project as ``manage.py svclink_worker`` runs it: PostgreSQL with persistent connections.

``WORKER_PG_DB`` names the database (each test its own), ``WORKER_AMQP_URL`` the broker.
Connections are kept (``CONN_MAX_AGE = None``) and health-checked (``CONN_HEALTH_CHECKS``),
which Django does when ``close_old_connections()`` runs: what the worker must do around
every message, as a request does.
"""

from __future__ import annotations

import os

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS, SVCLINK

INSTALLED_APPS = [*INSTALLED_APPS, "tests.django_project.parcels"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("WORKER_PG_DB", "postgres"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
    },
}
SVCLINK = {**SVCLINK, "amqp_url": os.environ.get("WORKER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")}
