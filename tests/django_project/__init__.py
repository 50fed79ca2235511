"""A small Django project for the tests: settings, URLs and views that call other services.

:func:`setup` configures Django from :mod:`.settings` once per process (with
``settings.configure``, so no ``DJANGO_SETTINGS_MODULE`` leaks into subprocesses) and
creates its SQLite database.
"""

from __future__ import annotations

import atexit
import contextlib
import os

_done = False


def setup() -> None:
    global _done
    if _done:
        return
    import django
    from django.conf import settings
    from django.core.management import call_command

    from . import settings as project

    if not settings.configured:
        settings.configure(**{name: getattr(project, name) for name in dir(project) if name.isupper()})
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    atexit.register(_remove_database, settings.DATABASES["default"]["NAME"])
    _done = True


def _remove_database(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
