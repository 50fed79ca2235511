"""What the sync and aio event drivers agree on about a broker, before any connection exists.

The one exception both transports raise when a connection is gone, which broker a URL
names, and the name a connection shows in the broker's tools.
"""

from __future__ import annotations

from ..settings import Settings


class Lost(Exception):
    """The connection (or channel) is gone; whatever was in flight may be redelivered.

    Raised by the transports (pika, aio-pika, the memory broker) and handled inside
    svclink: a publisher reopens and sends once more, a consumer reconnects. It never
    reaches a caller, who sees :class:`~svclink.BrokerUnavailable` or a publish error.
    """


def is_memory(settings: Settings) -> bool:
    """Whether ``amqp_url`` names the in-process broker (``memory://``)."""
    return settings.amqp_url[0].startswith("memory:")


def default_name(settings: Settings, role: str) -> str:
    """The connection name the broker shows (``rabbitmqctl list_connections``, the management UI)."""
    return f"svclink:{settings.service_name or 'app'}:{role}"
