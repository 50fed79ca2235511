"""``manage.py svclink_worker [TARGET ...]``: ``svclink worker`` inside the Django project.

Without a TARGET it runs the module-level consumers of every installed app's
``consumers.py``. Every sync handler runs between two ``close_old_connections()``, as a
request does. The options are those of ``svclink worker``; ``--relay ALIAS`` also runs the
outbox relay of that database alias (``--relay default``).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from svclink.cli.worker import (
    add_arguments,
    apply_options,
    configure_logging,
    load,
    relay_runner,
    run_consumers,
)
from svclink.contrib.django.outbox import DjangoOutbox
from svclink.contrib.django.worker import discover, hygienic
from svclink.core.errors import SvclinkError


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped
    help = "Run svclink consumers until SIGTERM: the apps' consumers.py, or the TARGETs given."

    def add_arguments(self, parser: Any) -> None:
        add_arguments(parser, targets_required=False)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        try:
            configure_logging(namespace.log_level)
            apply_options(namespace)  # before the consumers are made: their defaults
            consumers = load(namespace.targets) if namespace.targets else discover()
            if not consumers:
                raise CommandError("no consumers: no installed app's consumers.py defines one")
            consumers = hygienic(consumers)
            if namespace.relay and not namespace.declare_only:
                consumers.append(relay_runner(DjangoOutbox(namespace.relay)))
            code = run_consumers(consumers, namespace)
        except SvclinkError as exc:
            raise CommandError(str(exc)) from None
        if code:
            raise SystemExit(code)
