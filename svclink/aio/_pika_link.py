"""The aio publisher's connection to RabbitMQ: one aio-pika connection and confirm channel per event loop.

Publishing goes straight to the aiormq channel beneath aio-pika's (see :mod:`._pika`);
each confirm waits under :class:`~svclink.aio._deadlines.Deadlines`, with no loop
timer per publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from itertools import repeat

import aio_pika
import aio_pika.abc
import aiormq
import aiormq.exceptions

from ..core.events.broker import CLOSED_WHILE_IDLE, IDLE
from ..core.events.message import OutgoingMessage
from ..core.events.outcomes import Outcome, channel_closed
from ..core.settings import Settings
from ._deadlines import Deadlines
from ._loops import close_soon
from ._pika import AMQP_LOST, connect, ensure_exchange, publish, underlay_of
from ._transport import Lost


class PikaLink:
    """One connection + confirm channel, used by every task of one event loop."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aio_pika.abc.AbstractChannel,
        underlay: aiormq.Channel,
        settings: Settings,
    ) -> None:
        self._connection = connection
        self._settings = settings
        self._channel = channel
        self._underlay = underlay
        self._declared: set[str] = {""}  # the default exchange needs no declaring
        self._declaring = asyncio.Lock()  # 500 concurrent first publishes declare the exchange once
        self._deadlines = Deadlines()
        self._used = time.monotonic()
        #: the broker's reason for the channel it closed on a message (Outcome.REFUSED), if it did
        self.refusal = ""

    @classmethod
    async def open(cls, settings: Settings, name: str) -> PikaLink:
        connection = await connect(settings, name)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            underlay = await underlay_of(channel)
        except AMQP_LOST as exc:
            close_soon(connection.close())
            raise Lost(f"cannot connect to the broker: no channel: {exc!r}") from None
        except asyncio.CancelledError:  # the publish's deadline passed: leave no open connection behind
            close_soon(connection.close())
            raise
        return cls(connection, channel, underlay, settings)

    async def _declare(self, name: str) -> None:
        async with self._declaring:
            if name not in self._declared:
                await ensure_exchange(self._connection, self._settings, name, consumer=False)
                self._declared.add(name)

    async def _one(self, message: OutgoingMessage, deadline: float) -> tuple[Outcome]:
        """Publish ``message``, wait for its confirm; the outcome, in a tuple of one (see :meth:`publish`)."""
        try:
            with self._deadlines.wait(deadline):  # no loop timer per publish
                if message.exchange not in self._declared:
                    await self._declare(message.exchange)
                await publish(self._underlay, message)
        except aiormq.exceptions.PublishError:
            return (Outcome.RETURNED,)
        except aiormq.exceptions.DeliveryError:
            return (Outcome.NACKED,)
        except TimeoutError:
            return (Outcome.TIMED_OUT,)
        except aiormq.exceptions.ChannelClosed as exc:  # aiormq raises one class per reply code
            code = 406 if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed) else None
            outcome = channel_closed(code)
            if outcome is Outcome.REFUSED:
                self.refusal = str(exc.args[0]) if exc.args else repr(exc)
            return (outcome,)
        except AMQP_LOST:
            return (Outcome.LOST,)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled
            # not a cancellation: aiormq fails the confirms in flight with the CancelledError its
            # connection closed with (another publish dropped it after a timeout, say)
            return (Outcome.LOST,)
        finally:
            self._used = time.monotonic()
        return (Outcome.ACKED,)

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> Awaitable[Sequence[Outcome]]:
        """Publish ``messages`` concurrently on the channel and wait for their confirms; one outcome each.

        After an idle spell the loop runs once first, so the reader task sees a close that
        arrived meanwhile (with the loop stopped between ``asyncio.run()`` calls, say) and
        :class:`Lost` says nothing was sent. A link in steady use skips that: the loop ran
        moments ago, waiting for the last confirms. One message on a link in steady use,
        the common case, is awaited with no coroutine of this method's around it (each
        coroutine between a task and its wait is resumed at every step of the wait).
        """
        idle = time.monotonic() - self._used > IDLE
        if len(messages) == 1 and not idle:
            self._check_open()
            return self._one(messages[0], deadline)
        return self._publish_all(messages, deadline, idle)

    async def _publish_all(
        self, messages: Sequence[OutgoingMessage], deadline: float, idle: bool
    ) -> Sequence[Outcome]:
        if idle:
            await asyncio.sleep(0)
        self._check_open()
        if len(messages) == 1:  # no task to wrap it in
            return await self._one(messages[0], deadline)
        return [outcome for (outcome,) in await asyncio.gather(*map(self._one, messages, repeat(deadline)))]

    def _check_open(self) -> None:
        if self._connection.is_closed or self._channel.is_closed:
            raise Lost(CLOSED_WHILE_IDLE)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close()
