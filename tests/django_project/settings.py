"""Settings of the test project: the SVCLINK block is what a user would paste."""

from __future__ import annotations

import os
import tempfile

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
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "svclink.contrib.django.SvclinkMiddleware",
]
ROOT_URLCONF = "tests.django_project.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # a file, not :memory:, so the threads of async views see the same tables
        "NAME": os.path.join(tempfile.gettempdir(), f"svclink-django-tests-{os.getpid()}.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
SVCLINK = {
    "service_name": "api",
    "service_connections": ["user"],
    "signing_key": SIGNING_KEY,
}
