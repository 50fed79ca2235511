"""The synchronous side: requests (over urllib3) for HTTP, pika for events.

For Django views, Celery tasks and scripts. Everything here has a twin of the same name
in :mod:`svclink.aio`.
"""

from .._extras import require

require("requests", "sync")

from .http import Service, close, get_service  # noqa: E402

__all__ = ["Service", "close", "get_service"]
