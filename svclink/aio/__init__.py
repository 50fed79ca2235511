"""The asyncio side: httpx for HTTP, aio-pika for events.

The same names, arguments and behaviour as :mod:`svclink.sync`, awaited.
"""

from .._extras import require

require("httpx", "aio")
require("aio_pika", "aio")

from .dead import DeadEvent, DeadLetters  # noqa: E402
from .events import Event, EventConsumer, Publisher, get_publisher  # noqa: E402
from .http import Service, aclose, get_service  # noqa: E402

__all__ = [
    "DeadEvent",
    "DeadLetters",
    "Event",
    "EventConsumer",
    "Publisher",
    "Service",
    "aclose",
    "get_publisher",
    "get_service",
]
