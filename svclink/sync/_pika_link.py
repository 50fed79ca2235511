"""The sync publisher's connection to RabbitMQ: a pika ``SelectConnection`` with a confirm channel.

The link drives a ``pika.SelectConnection`` on its own ``IOLoop``, polling the loop only
while a publish waits; that gives a real publish timeout (``BlockingConnection`` waits
for a confirm forever) through pika's public API. It polls the way ``BlockingConnection``
does (``poll()`` and ``process_timeouts()`` on a poller activated once), not with
``start()``/``stop()``, which make and close an epoll set and write a wake-up byte every
time: three times per publish, a third of its time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop

from ..core.events.broker import (
    CLOSED_WHILE_IDLE,
    IDLE,
    DeclareRefusal,
    connect_error,
    exchange_failed,
)
from ..core.events.existing import durable, refused_exchange, warn_existing
from ..core.events.message import OutgoingMessage
from ..core.events.outcomes import Outcome, channel_closed
from ..core.settings import Settings
from ._pika import OneWriteConnection, connect_failure, declare_refusal, parameters, pika_properties
from ._transport import Lost


class PikaLink:
    """One publisher connection + confirm channel, driven by running its IOLoop until a condition holds."""

    def __init__(self, settings: Settings, name: str, deadline: float) -> None:
        self.pid = os.getpid()
        self._settings = settings
        self._ioloop = IOLoop()
        self._ioloop.activate_poller()  # for the link's life; IOLoop.close() releases it
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._state = "new"
        self._error: str = ""
        self._open_error: BaseException | str = ""  # why the connection failed to open, if it did
        self._declare_refusal = DeclareRefusal.OTHER  # why the broker closed the channel, when it did
        self._closed_code: int | None = None  # the reply code it closed the channel with, if it did
        #: the broker's reason for the channel it closed on a message (Outcome.REFUSED), if it did
        self.refusal = ""
        self._declared = {""}  # exchanges known to exist (the default one always does)
        self._next_tag = 1
        self._outcomes: dict[int, Outcome] = {}
        self._returned: set[str] = set()
        self._tag_ids: dict[int, str] = {}
        self._used = time.monotonic()
        failures = []
        for url in settings.amqp_url:
            try:
                self._open(parameters(url, settings, name), deadline)
                return
            except Lost as exc:
                failures.append(connect_failure(url, settings, str(exc), self._open_error))
                self._discard()
        self._ioloop.close()
        raise connect_error(failures)

    # driving the loop

    def _wait(self, until: Callable[[], bool], deadline: float) -> bool:
        """Run the IOLoop until ``until()`` holds, the connection closes, or ``deadline`` passes."""
        if until() or self._state in ("closed", "failed") or time.monotonic() >= deadline:
            return until()
        self._run(lambda: until() or self._state in ("closed", "failed"), deadline)
        return until()

    def _run(self, done: Callable[[], bool], deadline: float) -> None:
        """Run the IOLoop until ``done()`` holds or ``deadline`` passes."""
        expired: list[bool] = []
        timer = self._ioloop.call_later(max(0.0, deadline - time.monotonic()), lambda: expired.append(True))
        try:
            while not (done() or expired):
                self._ioloop.poll()  # waits for I/O or the next timer (the deadline at the latest)
                self._ioloop.process_timeouts()
        finally:
            self._ioloop.remove_timeout(timer)

    def _flag(self) -> tuple[list[bool], Callable[[Any], None]]:
        """A flag (a list, truthy once set) and the pika callback that sets it."""
        flag: list[bool] = []

        def set_flag(_frame: Any) -> None:
            flag.append(True)

        return flag, set_flag

    def _spin(self) -> None:
        """One pass of the IOLoop without blocking: handle whatever input is already there."""
        if self._state in ("open", "connecting"):
            timer = self._ioloop.call_later(0, lambda: None)  # so that poll() does not wait
            self._ioloop.poll()
            self._ioloop.process_timeouts()
            self._ioloop.remove_timeout(timer)  # already run: a no-op, unless poll() raised

    # opening

    def _open(self, params: pika.URLParameters, deadline: float) -> None:
        self._state, self._channel, self._error, self._open_error = "connecting", None, "", ""
        self._connection = OneWriteConnection(
            parameters=params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
            custom_ioloop=self._ioloop,
        )
        connect_deadline = min(deadline, time.monotonic() + self._settings.connect_timeout * 2)
        if not self._wait(lambda: self._state == "open", connect_deadline):
            raise Lost(self._error or f"{params.host}:{params.port}: no connection in time")
        self._connection.channel(on_open_callback=self._on_channel_open)
        if not self._wait(lambda: self._channel is not None, deadline):
            raise Lost(self._error or "no channel in time")
        self._channel.add_on_close_callback(self._on_channel_closed)
        self._channel.add_on_return_callback(self._on_return)
        selected, on_selected = self._flag()
        self._channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_selected)
        if not self._wait(lambda: bool(selected), deadline):
            raise Lost(self._error or "confirm mode not enabled in time")

    def _on_open(self, _connection: Any) -> None:
        self._state = "open"

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self._state, self._open_error = "failed", error
        self._keep_reason(str(error) or type(error).__name__)

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        self._state = "closed"
        self._keep_reason(str(reason) or type(reason).__name__)

    def _keep_reason(self, reason: str) -> None:
        """Remember why the link failed; the first reason stands.

        A channel the broker closed (``PRECONDITION_FAILED``, say) makes the link close its
        connection, and pika may read the broker's Close-Ok in the same pass: the
        connection's "Normal shutdown" that follows must not hide the broker's reason.
        """
        if not self._error:
            self._error = reason

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        if self._connection is None:  # _discard() is closing it: wait for the connection's own close
            return
        self._state, self._declare_refusal = "closed", declare_refusal(reason)
        if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            self._closed_code = reason.reply_code
        self._keep_reason(f"channel closed: {reason}")
        if self._connection.is_open:
            self._connection.close()

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        outcome = Outcome.ACKED if isinstance(method, pika.spec.Basic.Ack) else Outcome.NACKED
        tags = (
            [t for t in self._tag_ids if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            message_id = self._tag_ids.pop(tag, None)
            if outcome is Outcome.ACKED and message_id is not None and message_id in self._returned:
                self._returned.discard(message_id)
                self._outcomes[tag] = Outcome.RETURNED
            else:
                self._outcomes[tag] = outcome

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.add(properties.message_id or "")

    # publishing

    def _declare(self, exchange: str, deadline: float) -> None:
        """Declare the exchange as core says (see :mod:`svclink.core.events.existing`), on channels of
        its own: the broker closes the channel it refuses a declaration on."""
        durable_ = durable(self._settings, exchange)
        refused = self._declare_on_own_channel(exchange, deadline, durable=durable_)
        if refused is not None:
            error = refused_exchange(exchange, *refused, consumer=False)
            if error is None:  # it exists with another durability: use it as it is
                again = self._declare_on_own_channel(exchange, deadline, passive=True)
                error = None if again is None else refused_exchange(exchange, *again, consumer=False)
            if error is not None:
                raise error
            warn_existing(exchange, refused[1])
        self._declared.add(exchange)

    def _declare_on_own_channel(
        self, exchange: str, deadline: float, *, durable: bool = True, passive: bool = False
    ) -> tuple[DeclareRefusal, str] | None:
        """Declare ``exchange`` on a new channel; why the broker refused, or None."""
        opened: list[Any] = []
        closed: list[BaseException] = []
        if self._connection is None:
            raise Lost(self._error or "connection closed")
        self._connection.channel(on_open_callback=opened.append)
        if not self._wait(lambda: bool(opened), deadline):
            raise Lost(self._error or "no channel in time")
        channel = opened[0]
        channel.add_on_close_callback(lambda _channel, reason: closed.append(reason))
        done, on_done = self._flag()
        channel.exchange_declare(
            exchange=exchange, exchange_type="topic", durable=durable, passive=passive, callback=on_done
        )
        if not self._wait(lambda: bool(done or closed), deadline):
            raise exchange_failed(exchange, DeclareRefusal.OTHER, self._error)
        if closed:
            reason = closed[0]
            return declare_refusal(reason), str(getattr(reason, "reply_text", reason))
        channel.close()
        return None

    def publish(self, messages: Sequence[OutgoingMessage], deadline: float) -> list[Outcome]:
        """Publish ``messages`` pipelined and wait for all their confirms; one outcome each.

        Raises :class:`Lost` when the connection turns out to be dead before anything was sent
        (an idle connection the broker dropped), so the caller can reopen and send once.
        A connection in steady use is not checked first: the loop ran moments ago, waiting for
        the last confirms, and a close that arrives between two publishes is caught anyway,
        as a lost message that is sent again on a new connection.
        """
        if time.monotonic() - self._used > IDLE:
            self._spin()  # read what arrived while idle (the broker's close, say)
            self._spin()
        if self._state != "open":
            raise Lost(self._error or CLOSED_WHILE_IDLE)
        for message in messages:
            if message.exchange not in self._declared:
                self._declare(message.exchange, deadline)
        tags = []
        for message in messages:
            tag = self._next_tag
            try:
                self._channel.basic_publish(
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    body=message.body,
                    properties=pika_properties(message.properties),
                    mandatory=message.mandatory,
                )
            except pika.exceptions.AMQPError as exc:  # the channel closed under us: the rest are unsent
                self._state = "closed"
                self._keep_reason(repr(exc))
                break
            self._next_tag += 1
            self._tag_ids[tag] = message.properties.message_id or ""
            tags.append(tag)
        wanted = set(tags)
        self._wait(lambda: self._outcomes.keys() >= wanted, deadline)
        self._used = time.monotonic()
        lost = Outcome.TIMED_OUT if self._state == "open" else channel_closed(self._closed_code)
        if lost is Outcome.REFUSED:
            self.refusal = self._error
        outcomes = [self._outcomes.pop(t, lost) for t in tags]
        return outcomes + [Outcome.LOST] * (len(messages) - len(tags))

    def _discard(self) -> None:
        """Close the connection, waiting up to a second for the broker's Close-Ok.

        A connection is also waited for when it is closing already (the link closes it when
        the broker closes its channel on a message): left at that, its Close may never be
        written, and the broker keeps the dead connection open until its heartbeat runs out.
        """
        connection, self._connection = self._connection, None
        if connection is None or not (connection.is_open or connection.is_closing):
            return  # closed, or still opening: nothing to wait for
        if connection.is_open:
            connection.close()
        self._run(lambda: bool(connection.is_closed), time.monotonic() + 1.0)

    def close(self) -> None:
        self._discard()
        self._ioloop.close()
