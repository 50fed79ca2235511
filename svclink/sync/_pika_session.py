"""The sync consumer's connection to RabbitMQ: a blocking pika session that runs handlers inline.

The consumer uses ``pika.BlockingConnection`` and runs each handler on its own thread,
inline: handing every message to a worker thread and back costs more than the rest of
consuming it. A connection that goes unserviced misses heartbeats, though, so a handler
that runs longer than :data:`QUIET` lends the connection to a keeper thread, which
services it until the handler returns. pika's connection is not thread-safe; it is never
used by two threads at once: whoever holds the session's lock may use it, and the
consumer thread holds it at all times except while a handler runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from ..core.errors import EventError
from ..core.events.acks import AckFrame, Acks
from ..core.events.broker import (
    CANCELLED,
    DeclareRefusal,
    connect_exception,
    declare_failed,
    move_failed,
)
from ..core.events.existing import durable, refused_exchange, refused_queue, warn_existing
from ..core.events.handling import Ack, Disposition, republish
from ..core.events.message import Delivery
from ..core.events.stopping import StopWatch
from ..core.events.topology import Binding, ExchangeSpec, Topology, declarations
from ..core.settings import Settings
from ._broker_waits import BrokerWaits
from ._pika import (
    CONNECT_FAILED,
    PIKA_LOST,
    connect_failure,
    core_properties,
    declare_refusal,
    parameters,
    pika_properties,
)
from ._transport import Lost, Received


def blocking_connection(settings: Settings, name: str) -> pika.BlockingConnection:
    """A consumer's connection to the first node of ``amqp_url`` that takes one.

    Raises :class:`~svclink.EventError` when a node refused the login or the vhost (see
    :func:`~svclink.core.events.broker.connect_exception`), :class:`Lost` when none answered.
    """
    failures = []
    for url in settings.amqp_url:
        try:
            return pika.BlockingConnection(parameters(url, settings, name))
        except CONNECT_FAILED as exc:
            failures.append(connect_failure(url, settings, repr(exc), exc))
    raise connect_exception(failures)


#: why a session that gave its messages back behind an overdue handler is opened anew
OVERDUE = "a handler ran over handler_timeout; consuming again now that it has returned"

#: a handler running longer than this has the connection serviced by the keeper thread meanwhile
QUIET = 0.2


class PikaSession:
    """One consumer connection: declares the topology, consumes, runs handlers inline.

    While a handler runs, the consumer thread lets go of the connection (the ``_io`` lock),
    and a keeper thread takes it if the handler is still running after :data:`QUIET`
    seconds, servicing it (heartbeats, deliveries within the prefetch) until the handler
    returns. The keeper looks every ``QUIET / 2`` seconds: a fast handler costs nothing
    but the lock's release and acquire, no thread switch.
    """

    def __init__(
        self, settings: Settings, name: str, topo: Topology, prefetch: int, stopping: threading.Event
    ) -> None:
        self._settings = settings
        self._connection = blocking_connection(settings, name)
        #: after stop(), no wait for the broker lasts longer than connect_timeout
        self._waits = BrokerWaits(self._connection, stopping, StopWatch.of(settings))
        self._deliveries: deque[Received] = deque()
        self._acks = Acks(prefetch)
        self._cancelled = False
        self._gave_back = False  # a handler ran over its limit: consuming stopped until it returns
        self._io = threading.Lock()  # whoever holds it may use the connection
        self._io.acquire()  # the consumer thread, except while a handler runs
        self._handler: tuple[int, float] | None = None  # (number, monotonic start) of the running one
        self._overdue: tuple[float, Callable[[], None]] | None = None  # (when, what) if it runs too long
        self._handlers = 0
        self._serviced = False  # the keeper is servicing the connection for the running handler
        self._failure: str | None = None  # what the keeper found wrong with the connection
        self._closing = threading.Event()
        self._keeper: threading.Thread | None = None
        try:
            with self._waits.waiting():
                self._channel = self._connection.channel()
                self._declare(topo)
                self._channel.confirm_delivery()
                self._channel.basic_qos(prefetch_count=prefetch)
                self._channel.add_on_cancel_callback(self._on_cancel)
                self._tag = self._channel.basic_consume(topo.queue.name, self._on_message)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.close()
            raise declare_failed(declare_refusal(exc), exc.reply_text) from None
        except PIKA_LOST as exc:
            self.close()
            raise Lost(repr(exc)) from None
        except (EventError, Lost):  # a declaration refused, in core's words
            self.close()
            raise

    def _declare(self, topo: Topology) -> None:
        for step in declarations(topo):
            if isinstance(step, ExchangeSpec):
                self._declare_exchange(step.name)
            elif isinstance(step, Binding):
                self._channel.queue_bind(step.queue, step.exchange, routing_key=step.pattern)
            else:
                arguments = dict(step.arguments)
                try:
                    self._channel.queue_declare(
                        step.name, durable=not step.exclusive, exclusive=step.exclusive, arguments=arguments
                    )
                except pika.exceptions.ChannelClosedByBroker as exc:
                    raise refused_queue(step, declare_refusal(exc), exc.reply_text) from None

    def _declare_exchange(self, name: str) -> None:
        """Declare the exchange as core says (see :mod:`svclink.core.events.existing`), on channels of
        its own: the broker closes the channel it refuses a declaration on."""
        refused = self._declare_on_own_channel(name, durable=durable(self._settings, name))
        if refused is None:
            return
        error = refused_exchange(name, *refused, consumer=True)
        if error is None:  # it exists with another durability: use it as it is
            again = self._declare_on_own_channel(name, passive=True)
            error = None if again is None else refused_exchange(name, *again, consumer=True)
        if error is not None:
            raise error
        warn_existing(name, refused[1])

    def _declare_on_own_channel(
        self, name: str, *, durable: bool = True, passive: bool = False
    ) -> tuple[DeclareRefusal, str] | None:
        """Declare exchange ``name`` on a new channel; why the broker refused, or None."""
        channel = self._connection.channel()
        try:
            channel.exchange_declare(name, exchange_type="topic", durable=durable, passive=passive)
        except pika.exceptions.ChannelClosedByBroker as exc:
            return declare_refusal(exc), str(exc.reply_text)
        channel.close()
        return None

    def _why(self, exc: BaseException) -> str:
        """What ended the connection: the broker's reason for closing the channel, when it gave
        one (pika reports a later use of the channel only as "Channel is closed")."""
        reason = getattr(self._channel, "_closing_reason", None)  # set by pika when the broker closes it
        return repr(reason) if isinstance(reason, BaseException) else repr(exc)

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled = True

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = Delivery(
            body=body,
            properties=core_properties(properties),
            exchange=method.exchange,
            routing_key=method.routing_key,
            redelivered=method.redelivered,
        )
        self._deliveries.append(Received(delivery, method.delivery_tag))
        self._acks.delivered(method.delivery_tag)

    def _pump(self, timeout: float) -> None:
        try:
            self._connection.process_data_events(time_limit=timeout)
        except PIKA_LOST as exc:
            raise Lost(self._why(exc)) from None
        if self._cancelled:
            raise Lost(CANCELLED)

    def next(self, timeout: float) -> Received | None:
        if not self._deliveries:
            self._pump(timeout)
        return self._deliveries.popleft() if self._deliveries else None

    def run(
        self, fn: Callable[[], BaseException | None], limit: float, overdue: Callable[[], None]
    ) -> BaseException | None:
        """Run ``fn`` on this thread; if it takes longer than ``QUIET``, the keeper services the
        connection meanwhile, and calls ``overdue`` (holding the connection) once ``fn`` has run
        ``limit`` seconds.

        Raises :class:`Lost` (once ``fn`` has returned) when the keeper found the connection
        gone or the consumer cancelled: the message cannot be settled on it.
        """
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="svclink-consumer-keeper", daemon=True)
            self._keeper.start()
        self._handlers += 1
        self._overdue = (time.monotonic() + limit, overdue)
        self._handler = (self._handlers, time.monotonic())
        self._io.release()
        try:
            outcome = fn()
        finally:
            self._handler = self._overdue = None
            if self._serviced:
                self.wake()  # the keeper is waiting for I/O: have it look up and let go
            self._io.acquire()
        if self._failure is not None or self._cancelled:
            raise Lost(self._failure or CANCELLED)
        if self._gave_back:
            raise Lost(OVERDUE)
        return outcome

    def _keep(self) -> None:
        """The keeper thread: service the connection while a handler runs longer than ``QUIET``."""
        while not self._closing.wait(QUIET / 2):
            handler = self._handler
            if handler is None or time.monotonic() - handler[1] < QUIET:
                continue
            if not self._io.acquire(blocking=False):  # the handler has just returned
                continue
            try:
                self._serviced = True
                # the messages handled so far are done: no slow handler holds their acks back
                with contextlib.suppress(*PIKA_LOST):  # (a lost connection: the loop below finds out)
                    self._send_acks(self._acks.take())
                while self._handler is handler and self._failure is None and not self._closing.is_set():
                    try:
                        self._connection.process_data_events(time_limit=self._until_overdue())
                    except PIKA_LOST as exc:
                        self._failure = repr(exc)
            finally:
                self._serviced = False
                self._io.release()

    def _until_overdue(self) -> float:
        """Seconds (at most one) until the running handler is overdue; calls ``overdue`` once it is."""
        pending = self._overdue  # read once: the handler's thread clears it when the handler returns
        if pending is None:
            return 1.0
        when, overdue = pending
        left = when - time.monotonic()
        if left > 0:
            return min(1.0, left)
        self._overdue = None
        try:
            overdue()  # settles the message as failed, on this thread, which holds the connection
            self._give_back()
        except Lost as exc:
            self._failure = str(exc)
        return 1.0

    def _give_back(self) -> None:
        """The handler runs on past its limit: stop consuming and return the messages in hand,
        so that none waits unacknowledged behind it until the broker's ``consumer_timeout``
        closes the channel. The run consumes again, on a new connection, once it returns."""
        try:
            self._send_acks(self._acks.take())  # the overdue message's own, held back behind those in hand
        except PIKA_LOST as exc:
            raise Lost(self._why(exc)) from None
        self.stop_consuming()
        while self._deliveries:
            self.reject(self._deliveries.popleft())
        self._gave_back = True

    def reject(self, received: Received) -> None:
        try:
            self._channel.basic_nack(received.tag, requeue=True)
        except PIKA_LOST as exc:
            raise Lost(self._why(exc)) from None
        self._acks.settled(received.tag)

    def stop_consuming(self) -> None:
        try:
            with self._waits.waiting():
                self._channel.basic_cancel(self._tag)
        except PIKA_LOST as exc:
            raise Lost(self._why(exc)) from None

    def finish(self, received: Received, disposition: Disposition) -> None:
        try:
            if not isinstance(disposition, Ack):
                message = republish(received.delivery, disposition)
                try:
                    with self._waits.waiting():  # for the confirm
                        self._channel.basic_publish(
                            "", message.routing_key, message.body, pika_properties(message.properties), True
                        )
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    self._send_acks(self._acks.take())
                    self._channel.basic_nack(received.tag, requeue=True)
                    self._acks.settled(received.tag)
                    raise move_failed(message.routing_key, repr(exc)) from None
            self._acks.finished(received.tag)
            self._send_acks(self._acks.due(more_in_hand=bool(self._deliveries)))
        except PIKA_LOST as exc:
            raise Lost(self._why(exc)) from None

    def _send_acks(self, frames: list[AckFrame]) -> None:
        for frame in frames:
            self._channel.basic_ack(frame.tag, multiple=frame.multiple)

    def wake(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.add_callback_threadsafe(lambda: None)

    def close(self) -> None:
        """Close the connection (from the consumer thread, outside a handler: it holds the lock)."""
        self._closing.set()
        if self._keeper is not None:
            self._keeper.join()
        if self._connection.is_open:
            with contextlib.suppress(Exception):
                self._send_acks(self._acks.take())  # messages handled after stop() while their acks were held
            with contextlib.suppress(Exception), self._waits.waiting():
                self._connection.close()
