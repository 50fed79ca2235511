"""Django integration: an app for ``INSTALLED_APPS``, a middleware, the outbox and the inbox.

.. code-block:: python

    INSTALLED_APPS = [..., "svclink.contrib.django"]
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "svclink.contrib.django.SvclinkMiddleware", ...]
    SVCLINK = {"service_name": "api", "service_connections": ["user"], ...}

``publish_on_commit`` and ``DjangoOutbox`` use svclink's models, so they are imported on
first use (after Django has loaded its apps), not with this package.
"""

from typing import Any

from .middleware import SvclinkMiddleware, default_user_context

__all__ = ["DjangoInbox", "DjangoOutbox", "SvclinkMiddleware", "default_user_context", "publish_on_commit"]

_LAZY = {"publish_on_commit": "outbox", "DjangoOutbox": "outbox", "DjangoInbox": "inbox"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
