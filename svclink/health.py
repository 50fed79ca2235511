"""``svclink.check()``: are the required services configured and reachable?"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from .core.http.registry import base_url
from .core.settings import Settings, get_settings


def check(settings: Settings | None = None, timeout: float = 1.0) -> list[str]:
    """Problems with the required services, one sentence each; an empty list means all is well.

    A required service is reachable when a TCP connection to its host and port opens
    within ``timeout`` seconds. Nothing is sent.
    """
    settings = settings or get_settings()
    problems = []
    for name in settings.required_service_connections:
        url = urlsplit(base_url(settings, name))
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
        except OSError as exc:
            where = f"{url.scheme}://{url.netloc}"
            problems.append(f"required service {name!r} at {where} is not reachable: {exc}")
    return problems
