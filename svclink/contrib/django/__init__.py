"""Django integration: an app for ``INSTALLED_APPS`` and a middleware.

.. code-block:: python

    INSTALLED_APPS = [..., "svclink.contrib.django"]
    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "svclink.contrib.django.SvclinkMiddleware", ...]
    SVCLINK = {"service_name": "api", "service_connections": ["user"], ...}
"""

from .middleware import SvclinkMiddleware, default_user_context

__all__ = ["SvclinkMiddleware", "default_user_context"]
