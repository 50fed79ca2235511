"""The asyncio side: httpx for HTTP, aio-pika for events.

The same names, arguments and behaviour as :mod:`svclink.sync`, awaited.
"""

from .._extras import require

require("httpx", "aio")
require("aio_pika", "aio")

from ..core.events.envelope import Event  # noqa: E402
from .consumer import EventConsumer  # noqa: E402
from .dead import DeadEvent, DeadLetters  # noqa: E402
from .http import Service, aclose, get_service  # noqa: E402
from .publishing import Publisher, get_publisher  # noqa: E402

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
