"""The Django app: configures svclink from ``settings.SVCLINK`` when Django starts."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed

from ...core import logs
from ...core.events.inbox import set_default_store
from . import checks, conf


def _reload(*, setting: str, **kwargs: Any) -> None:
    """``override_settings(SVCLINK=...)`` in a test reconfigures svclink, and restores it after."""
    if setting == "SVCLINK":
        conf.load_from_django()


class SvclinkConfig(AppConfig):  # type: ignore[misc]  # Django is untyped
    name = "svclink.contrib.django"
    label = "svclink"
    verbose_name = "svclink"

    def ready(self) -> None:
        conf.load_from_django()  # a ConfigurationError here stops start-up, naming the field
        checks.register()
        setting_changed.connect(_reload, dispatch_uid="svclink.contrib.django.reload")
        logs.install()
        from .inbox import DjangoInbox

        set_default_store(DjangoInbox)  # dedupe=True on a sync consumer, with no store named
