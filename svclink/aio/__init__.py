"""The asyncio side: httpx for HTTP, aio-pika for events.

The same names, arguments and behaviour as :mod:`svclink.sync`, awaited.
"""

from .._extras import require

require("httpx", "aio")

from .http import Service, aclose, get_service  # noqa: E402

__all__ = ["Service", "aclose", "get_service"]
