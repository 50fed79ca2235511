"""Events over pika: a thread- and fork-safe publisher and a blocking consumer.

Only I/O lives here. What goes on the wire (envelope, headers, routing key), what an
outcome means (which exception) and what becomes of a consumed message (ack, retry,
dead-letter) are decided in :mod:`svclink.core.events` and :mod:`svclink.core.consuming`.

The transports are in ``_pika`` (RabbitMQ) and ``_memory`` (``amqp_url="memory://"``, the
in-process broker of :mod:`svclink.testing`); this module holds the public objects and the
flow they share: one connection per (process, thread), one resend after a lost
connection, reconnect with backoff, handlers run with the publisher's context bound.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

from ..core.consuming import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAYS,
    ConsumerConfig,
    Decision,
    Handle,
    HandlerTable,
    log_decision,
    receive,
    reconnect_delay,
    settle,
    topology,
)
from ..core.context import bind, log_incoming
from ..core.errors import BrokerUnavailable, EventError, PublishError
from ..core.events import LOST, SEND_ATTEMPTS, Event, OutgoingMessage, prepare, publish_error, resolve
from ..core.locks import ForkSafeLock
from ..core.settings import Settings, get_settings
from ._memory import MemoryLink, MemorySession
from ._pika import PikaLink, PikaSession
from ._transport import Lost, PublishLink, Received, Session, default_name, is_memory

log = logging.getLogger("svclink.events")

__all__ = ["Event", "EventConsumer", "Publisher", "get_publisher"]

Handler = Callable[[Event], Any]
F = TypeVar("F", bound=Handler)


class Publisher:
    """Publishes events with confirms; safe to share between threads and across ``fork()``.

    Each (process, thread) gets its own connection, opened on first use, so a forked
    child never touches its parent's socket and threads never share a channel.
    """

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.connection_name = connection_name or default_name(self.settings, "publisher")
        self._local = threading.local()

    def _link(self, deadline: float) -> PublishLink:
        link: PublishLink | None = getattr(self._local, "link", None)
        if link is None or link.pid != os.getpid():  # a fork's child drops its parent's link untouched
            if is_memory(self.settings):
                link = MemoryLink(self.settings, self.connection_name)
            else:
                link = PikaLink(self.settings, self.connection_name, deadline)
            self._local.link = link
        return link

    def _drop(self) -> None:
        link = getattr(self._local, "link", None)
        self._local.link = None
        if link is not None and link.pid == os.getpid():
            with contextlib.suppress(Exception):
                link.close()

    def publish(
        self,
        event_type: str,
        data: Any,
        *,
        exchange: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Event:
        """Publish one event and wait for the broker's confirm; returns the event as sent.

        Raises :class:`~svclink.InvalidEvent` before any I/O for a bad type or payload,
        :class:`~svclink.UnroutableError` when no queue is bound for it,
        :class:`~svclink.PublishNacked`, :class:`~svclink.PublishTimeout`, or
        :class:`~svclink.BrokerUnavailable` when no broker can be reached.
        """
        event, message = prepare(
            self.settings,
            event_type,
            data,
            exchange=exchange,
            event_id=event_id,
            occurred_at=datetime.now(UTC),
            wall=time.time(),
            headers=headers,
        )
        error = self._send([message], timeout)[0]
        if error is not None:
            raise error
        return event

    def publish_many(
        self,
        events: Iterable[tuple[str, Any]],
        *,
        exchange: str | None = None,
        timeout: float | None = None,
    ) -> list[Event]:
        """Publish ``(event_type, data)`` pairs pipelined, waiting once for all their confirms.

        All are sent even if some fail; then the first failure is raised, with
        ``published`` (the events confirmed) and ``failed`` (``(event, error)`` pairs)
        attached to it.
        """
        now, wall = datetime.now(UTC), time.time()
        prepared = [
            prepare(self.settings, t, d, exchange=exchange, event_id=None, occurred_at=now, wall=wall)
            for t, d in events
        ]
        if not prepared:
            return []
        errors = self._send([m for _, m in prepared], timeout)
        failed = [(e, err) for (e, _), err in zip(prepared, errors, strict=True) if err is not None]
        if failed:
            first = failed[0][1]
            first.published = tuple(e for (e, _), err in zip(prepared, errors, strict=True) if err is None)
            first.failed = tuple(failed)
            raise first
        return [e for e, _ in prepared]

    def _send(self, messages: Sequence[OutgoingMessage], timeout: float | None) -> list[PublishError | None]:
        """Send with one reopen: messages that never reached a live connection go again, once."""
        deadline = time.monotonic() + (self.settings.publish_timeout if timeout is None else timeout)
        results: list[PublishError | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        sent = False  # whether the messages in ``todo`` went out once and lost their confirms
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                outcomes = self._link(deadline).publish([messages[i] for i in todo], deadline)
            except (Lost, BrokerUnavailable) as exc:
                if isinstance(exc, Lost):
                    self._drop()
                if sent:  # no way to send them again: they may or may not have landed, not "unavailable"
                    for i in todo:
                        results[i] = publish_error(LOST, messages[i], f"not sent again: {exc}")
                    break
                if isinstance(exc, BrokerUnavailable):
                    raise
                if attempt == SEND_ATTEMPTS:
                    raise BrokerUnavailable(f"connection to the broker lost: {exc}") from None
                continue
            step = resolve(outcomes, attempt=attempt, late=time.monotonic() >= deadline)
            if step.drop:
                self._drop()
            for position, outcome in step.final:
                results[todo[position]] = publish_error(outcome, messages[todo[position]])
            if not step.retry:
                break
            todo, sent = [todo[p] for p in step.retry], True
        return results

    def close(self) -> None:
        """Close this thread's connection (the next publish opens a new one)."""
        self._drop()


_publisher: Publisher | None = None
_publisher_lock = ForkSafeLock()


def get_publisher() -> Publisher:
    """The process's publisher for the installed settings (rebuilt when settings change)."""
    global _publisher
    settings = get_settings()
    with _publisher_lock:
        if _publisher is None or _publisher.settings is not settings:
            _publisher = Publisher(settings)
        return _publisher


# -- consuming --------------------------------------------------------------------------


class EventConsumer:
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    Register handlers with :meth:`on` (an event type or a pattern such as ``user.*``) and
    :meth:`default`, then call :meth:`run`, which blocks until :meth:`stop`.

    With ``exclusive=True`` the queues belong to the consumer's connection: not durable,
    invisible to other connections, deleted by the broker when the connection closes (a
    listener's own temporary copy of the events; give each process its own queue name).
    """

    def __init__(
        self,
        queue: str,
        *,
        exchange: str | None = None,
        bindings: Sequence[str] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        prefetch: int | None = None,
        queue_type: str | None = None,
        exclusive: bool = False,
        settings: Settings | None = None,
        connection_name: str | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._bindings = None if bindings is None else tuple(bindings)
        self.config = ConsumerConfig(
            queue=queue,
            exchange=self.settings.event_exchange if exchange is None else exchange,
            bindings=self._bindings or ("#",),
            max_attempts=max_attempts,
            retry_delays=tuple(retry_delays),
            prefetch=self.settings.prefetch_count if prefetch is None else prefetch,
            queue_type=queue_type,
            exclusive=exclusive,
        )
        self.connection_name = connection_name or default_name(self.settings, f"consumer:{queue}")
        self._table: HandlerTable[Handler] = HandlerTable()
        self._stopping = threading.Event()
        self._session: Session | None = None

    def on(self, pattern: str) -> Callable[[F], F]:
        """Decorator: handle events whose type is ``pattern`` or matches it (``*``, ``#``)."""

        def register(handler: F) -> F:
            _check_sync(handler)
            self._table.add(pattern, handler)
            return handler

        return register

    def default(self, handler: F) -> F:
        """Decorator: handle every event no other handler matches (the same as ``on("#")``)."""
        _check_sync(handler)
        self._table.set_default(handler)
        return handler

    def stop(self) -> None:
        """Ask :meth:`run` to return once the message in hand is finished (any thread, or a handler)."""
        self._stopping.set()
        session = self._session
        if session is not None:
            session.wake()

    def _effective_config(self) -> ConsumerConfig:
        if not self._table:
            raise EventError("the consumer has no handlers: register one with @consumer.on(...)")
        return attrs.evolve(self.config, bindings=self._bindings or self._table.patterns())

    def _open(self, config: ConsumerConfig) -> Session:
        topo = topology(config)
        if is_memory(self.settings):
            return MemorySession(self.settings, self.connection_name, topo, config.prefetch)
        return PikaSession(self.settings, self.connection_name, topo, config.prefetch)

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away."""
        config = self._effective_config()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self._session = self._open(config)
                except Lost as exc:
                    failures += 1
                    log.warning("consumer %s: broker unavailable (%s); retrying", config.queue, exc)
                    self._stopping.wait(reconnect_delay(failures))
                    continue
                failures = 0
                log.info("consumer %s: consuming", config.queue)
                try:
                    self._serve(self._session, config)
                except Lost as exc:
                    failures += 1
                    log.warning("consumer %s: connection lost (%s); reconnecting", config.queue, exc)
                    self._stopping.wait(reconnect_delay(failures))
                finally:
                    session, self._session = self._session, None
                    session.close()
        finally:
            self._stopping.clear()

    def _serve(self, session: Session, config: ConsumerConfig) -> None:
        while not self._stopping.is_set():
            received = session.next(0.5)
            if received is not None:
                session.finish(received, self._process(session, config, received))

    def _process(self, session: Session, config: ConsumerConfig, received: Received) -> Decision:
        step = receive(
            received.delivery, config, self._table, self.settings, now=time.monotonic(), wall=time.time()
        )
        if not isinstance(step, Handle):
            log_decision(config, received.delivery, step)
            return step
        log_incoming(step.incoming, "event")
        error = session.run(lambda: _call(step))
        decision = settle(received.delivery, config, error)
        log_decision(config, received.delivery, decision, step.event, error)
        return decision


def _call(step: Handle[Handler]) -> BaseException | None:
    """Run a handler with the publisher's request context bound; its exception is the outcome."""
    try:
        with bind(step.event.context):
            step.handler(step.event)
    except Exception as exc:
        return exc
    return None


def _check_sync(handler: Handler) -> None:
    if inspect.iscoroutinefunction(handler):
        raise TypeError("svclink.sync handlers must be plain functions; use svclink.aio for async def")
