"""What the aio publisher and consumer need from a transport: aio-pika or the memory broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from ..core.consuming import Decision
from ..core.events import Delivery, OutgoingMessage
from ..core.settings import Settings

OnDelivery = Callable[[Delivery, Any], Coroutine[Any, Any, None]]


class Lost(Exception):
    """The connection (or channel) is gone; whatever was in flight may be redelivered."""


def is_memory(settings: Settings) -> bool:
    """Whether ``amqp_url`` names the in-process broker."""
    return settings.amqp_url[0].startswith("memory:")


def default_name(settings: Settings, role: str) -> str:
    """The connection name the broker shows (``rabbitmqctl list_connections``, the management UI)."""
    return f"svclink:{settings.service_name or 'app'}:{role}"


class PublishLink(Protocol):
    """One publisher connection: publish pipelined and report one outcome per message.

    ``publish`` raises :class:`Lost` only when nothing was sent (a connection found dead
    before use), so the caller may reopen and send without risking a duplicate.
    """

    async def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[str]: ...

    async def close(self) -> None: ...


class Session(Protocol):
    """One consumer connection: declared, consuming, settling messages as the core decides."""

    lost: asyncio.Event

    async def start(self, on_delivery: OnDelivery) -> None: ...

    async def finish(self, token: Any, delivery: Delivery, decision: Decision) -> None: ...

    async def reject(self, token: Any) -> None: ...

    async def stop_consuming(self) -> None: ...

    async def close(self) -> None: ...
