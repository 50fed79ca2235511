"""What ``manage.py svclink_worker`` adds to ``svclink worker``: consumers found in the apps, and
Django's database connection hygiene around every message.

Django closes a request's database connections when they are broken or past
``CONN_MAX_AGE`` (``close_old_connections``, on ``request_started`` and
``request_finished``); a worker has no requests, so without the same around each message a
connection the database dropped (a restart, a failover, an idle timeout) would fail every
message after it. Each sync handler is wrapped to do what a request does.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.db import close_old_connections
from django.utils.module_loading import autodiscover_modules

from ...cli.worker import consumers_in


def discover() -> list[Any]:
    """The module-level consumers of every installed app's ``consumers.py``, app by app
    (as Celery finds ``tasks.py``); an error raised while importing one is raised."""
    autodiscover_modules("consumers")
    found: list[Any] = []
    for app in apps.get_app_configs():
        module = sys.modules.get(f"{app.name}.consumers")
        if module is not None:
            found += [c for c in consumers_in(module) if c not in found]
    return found


def with_fresh_connections(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``handler`` between two ``close_old_connections()``, as Django runs a request."""

    @functools.wraps(handler)
    def handle(event: Any) -> Any:
        close_old_connections()
        try:
            return handler(event)
        finally:
            close_old_connections()

    return handle


def hygienic(consumers: list[Any]) -> list[Any]:
    """``consumers`` with every sync handler wrapped in :func:`with_fresh_connections`."""
    for consumer in consumers:
        if not consumer.asynchronous:
            consumer.wrap_handlers(with_fresh_connections)
    return consumers
