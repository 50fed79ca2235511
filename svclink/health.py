"""``svclink.check()``: are the required services reachable, the breakers closed, the consumers consuming?"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from .core.events.consumer import not_consuming
from .core.http.registry import base_url, open_breakers
from .core.settings import Settings, get_settings


def check(settings: Settings | None = None, timeout: float = 1.0) -> list[str]:
    """Problems, one sentence each; an empty list means all is well.

    A required service is reachable when a TCP connection to its host and port opens
    within ``timeout`` seconds (nothing is sent). A service whose circuit breaker is open,
    and a consumer whose ``run()`` has started but is not consuming (connecting, or
    reconnecting after the broker went away), are problems too.
    """
    settings = settings or get_settings()
    problems = [*open_breakers(time.monotonic()), *not_consuming()]
    for name in settings.required_service_connections:
        url = urlsplit(base_url(settings, name))
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
        except OSError as exc:
            where = f"{url.scheme}://{url.netloc}"
            problems.append(f"required service {name!r} at {where} is not reachable: {exc}")
    return problems
