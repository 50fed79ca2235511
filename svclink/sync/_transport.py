"""What the sync publisher and consumer need from a transport: pika or the memory broker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..core.events.broker import Lost as Lost
from ..core.events.handling import Disposition
from ..core.events.message import Delivery, OutgoingMessage
from ..core.events.outcomes import Outcome


class PublishLink(Protocol):
    """One publisher connection: publish pipelined and report one outcome per message.

    ``publish`` raises :class:`Lost` only when nothing was sent (a connection found dead
    before use), so the caller may reopen and send without risking a duplicate.
    """

    pid: int
    #: the broker's reason for the channel it closed on a message (``Outcome.REFUSED``), if it did
    refusal: str

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[Outcome]: ...

    def close(self) -> None: ...


class Received:
    """A delivery plus what the session needs to settle it."""

    def __init__(self, delivery: Delivery, tag: int) -> None:
        self.delivery = delivery
        self.tag = tag


class Session(Protocol):
    """One consumer connection: declared, consuming, settling messages as the core decides."""

    def next(self, timeout: float) -> Received | None: ...

    def run(
        self, fn: Callable[[], BaseException | None], limit: float, overdue: Callable[[], None]
    ) -> BaseException | None:
        """Run ``fn`` (a handler) on this thread; call ``overdue`` from another thread once it
        has run ``limit`` seconds (with the connection usable for :meth:`finish` there)."""
        ...

    def finish(self, received: Received, disposition: Disposition) -> None: ...

    def reject(self, received: Received) -> None:
        """Give ``received`` back to the queue unhandled (a nack with requeue)."""
        ...

    def stop_consuming(self) -> None:
        """Ask the broker for no more deliveries (those on their way still arrive)."""
        ...

    def wake(self) -> None: ...

    def close(self) -> None: ...
