"""The test project as an ASGI application, for a real server (uvicorn) in its own process:
``Uvicorn("tests.django_project.asgi:application", clean_env(), lifespan="off")``."""

from __future__ import annotations

from django.core.asgi import get_asgi_application

from . import setup

setup()
application = get_asgi_application()
