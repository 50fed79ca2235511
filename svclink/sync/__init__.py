"""The synchronous side: requests (over urllib3) for HTTP, pika for events.

For Django views, Celery tasks and scripts. Everything here has a twin of the same name
in :mod:`svclink.aio`.
"""

from .._extras import require

require("requests", "sync")
require("pika", "sync")

from ..core.events.envelope import Event  # noqa: E402
from .consumer import EventConsumer  # noqa: E402
from .dead import DeadEvent, DeadLetters  # noqa: E402
from .http import Service, close, get_service  # noqa: E402
from .publishing import Publisher, get_publisher  # noqa: E402

__all__ = [
    "DeadEvent",
    "DeadLetters",
    "Event",
    "EventConsumer",
    "Publisher",
    "Service",
    "close",
    "get_publisher",
    "get_service",
]
