"""What the aio publisher and consumer need from a transport: aio-pika or the memory broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from ..core.events.broker import Lost as Lost
from ..core.events.handling import Disposition
from ..core.events.message import Delivery, OutgoingMessage
from ..core.events.outcomes import Outcome

OnDelivery = Callable[[Delivery, Any], Coroutine[Any, Any, None]]


class PublishLink(Protocol):
    """One publisher connection: publish pipelined and report one outcome per message.

    ``publish`` raises :class:`Lost` only when nothing was sent (a connection found dead
    before use), so the caller may reopen and send without risking a duplicate.
    """

    #: the broker's reason for the channel it closed on a message (``Outcome.REFUSED``), if it did
    refusal: str

    def publish(
        self, messages: Sequence[OutgoingMessage], deadline: float
    ) -> Awaitable[Sequence[Outcome]]: ...

    async def close(self) -> None: ...


class Session(Protocol):
    """One consumer connection: declared, consuming, settling messages as the core decides."""

    lost: asyncio.Event
    #: why it was lost, for the log
    why: str

    async def start(self, on_delivery: OnDelivery) -> None: ...

    async def finish(self, token: Any, delivery: Delivery, disposition: Disposition) -> None: ...

    async def reject(self, token: Any) -> None: ...

    async def stop_consuming(self) -> None: ...

    async def close(self) -> None: ...
