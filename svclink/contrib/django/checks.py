"""A Django system check: are the required services reachable?"""

from __future__ import annotations

from typing import Any

from django.core import checks

from ...health import check

TAG = "svclink"


def required_services(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """One ``svclink.E001`` error per required service that does not accept a TCP connection.

    Runs with every ``manage.py`` command that runs checks (``runserver``, ``migrate``,
    ``check``); silence it with ``SILENCED_SYSTEM_CHECKS = ["svclink.E001"]`` where the
    services are not expected to be up (a build step, for instance).
    """
    return [
        checks.Error(
            problem,
            hint="start the service, or fix its address in SVCLINK['service_hosts'] / host_pattern",
            id="svclink.E001",
        )
        for problem in check()
    ]


def register() -> None:
    checks.register(required_services, TAG)
