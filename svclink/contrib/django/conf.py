"""``settings.SVCLINK``: read, validated and installed as svclink's settings.

Every key is a :class:`svclink.Settings` field except the Django-only ones below, which
configure the middleware. A bad value raises :class:`svclink.ConfigurationError` naming
the field when Django starts (``AppConfig.ready``), and again whenever a test changes
``SVCLINK`` with ``override_settings``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from ...configuration import configure
from ...core.errors import ConfigurationError
from ...core.settings import Settings

#: keys of ``SVCLINK`` that belong to the Django integration, not to :class:`svclink.Settings`
DJANGO_KEYS = frozenset({"user_context"})

UserContext = Callable[[Any], Any]

_user_context: UserContext | None = None


def _callable(field: str, value: object) -> UserContext | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ConfigurationError(field, f"cannot import {value!r}: {exc}") from None
    if not callable(value):
        raise ConfigurationError(field, "must be a callable or the dotted path of one")
    return value


def load(raw: object) -> Settings:
    """Install svclink's settings from a ``SVCLINK`` value (None: from the environment alone)."""
    global _user_context
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError("SVCLINK", f"must be a dict, got {type(raw).__name__}")
    values = {k: v for k, v in raw.items() if k not in DJANGO_KEYS}
    user_context = _callable("user_context", raw.get("user_context"))
    installed = configure(**values)
    _user_context = user_context
    return installed


def load_from_django() -> Settings:
    """Install svclink's settings from ``django.conf.settings.SVCLINK``."""
    return load(getattr(django_settings, "SVCLINK", None))


def user_context() -> UserContext | None:
    """The ``user_context`` callable configured in ``SVCLINK``, if any."""
    return _user_context
