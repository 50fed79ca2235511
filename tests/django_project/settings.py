"""Settings of the test project: the SVCLINK block is what a user would paste."""

from __future__ import annotations

import os
import tempfile
import uuid

SIGNING_KEY = "django-test-signing-key-0123456789"

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "svclink.contrib.django",
    "tests.django_project.shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.common.CommonMiddleware",  # APPEND_SLASH, as in every new project
    "svclink.contrib.django.SvclinkMiddleware",
]
ROOT_URLCONF = "tests.django_project.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # a file, not :memory:, so the threads of async views see the same tables
        "NAME": os.path.join(tempfile.gettempdir(), f"svclink-django-tests-{os.getpid()}.sqlite3"),
    },
    # the outbox and inbox tests' PostgreSQL database (created and dropped by tests/outbox_support.py)
    "pg": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SHOP_PG_DB") or f"svclink_test_{uuid.uuid4().hex[:12]}",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
SVCLINK = {
    "service_name": "api",
    "service_connections": ["user"],
    "signing_key": SIGNING_KEY,
}
