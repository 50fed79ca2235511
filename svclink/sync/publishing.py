"""Publishing over pika: a thread- and fork-safe publisher.

Only I/O lives here. What goes on the wire (envelope, headers, routing key) and what an
outcome means (which exception) are decided in :mod:`svclink.core.events.publishing`;
the connection is a ``_pika_link`` (RabbitMQ) or a ``_memory`` link (``memory://``, the
in-process broker of :mod:`svclink.testing`). Here: one connection per (process,
thread), one resend after a lost connection.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.errors import BrokerUnavailable
from ..core.events.broker import Lost, is_memory
from ..core.events.envelope import Event
from ..core.events.publishing import BasePublisher, PublisherCache, Sending, drops_connection
from ..core.locks import ForkSafeLock
from ..core.logs import logger
from ..core.settings import Settings
from ._memory import MemoryLink
from ._pika_link import PikaLink
from ._transport import PublishLink

log = logger("svclink.events")

__all__ = ["Publisher", "get_publisher"]


class Publisher(BasePublisher):
    """Publishes events with confirms; safe to share between threads and across ``fork()``.

    Each (process, thread) gets its own connection, opened on first use, so a forked
    child never touches its parent's socket and threads never share a channel. The
    connection of a thread that has ended is closed by the next thread that opens one,
    or by :meth:`close`. ``with Publisher() as publisher:`` closes this thread's connection
    at the end of the block, as :meth:`close` does.
    """

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        super().__init__(settings, connection_name=connection_name)
        self._local = threading.local()
        #: every thread's link: a thread's local slot goes when it ends, its open socket does not
        self._threads: dict[threading.Thread, PublishLink] = {}
        self._threads_lock = ForkSafeLock()

    def _link(self, deadline: float) -> PublishLink:
        link: PublishLink | None = getattr(self._local, "link", None)
        if link is None or link.pid != os.getpid():  # a fork's child drops its parent's link untouched
            self._close_ended()
            if is_memory(self.settings):
                link = MemoryLink(self.settings, self.connection_name)
            else:
                link = PikaLink(self.settings, self.connection_name, deadline)
            self._local.link = link
            with self._threads_lock:
                self._threads[threading.current_thread()] = link
        return link

    def _drop(self, *, wait: bool = True) -> None:
        """Forget this thread's link and close it; with ``wait=False`` on a thread of its own:
        a link is dropped when it is dead or has stopped answering, and a close waits up to a
        second for the broker's reply, which must not hold up the publish that gave up on it."""
        link = getattr(self._local, "link", None)
        self._local.link = None
        with self._threads_lock:
            self._threads.pop(threading.current_thread(), None)
        if wait or link is None:
            _close(link)
        else:
            threading.Thread(target=_close, args=(link,), name="svclink-publisher-close", daemon=True).start()

    def _close_ended(self) -> None:
        """Close the links of threads that have ended (after a fork: every other thread's, untouched)."""
        with self._threads_lock:
            ended = [(t, link) for t, link in self._threads.items() if not t.is_alive()]
            for thread, _ in ended:
                del self._threads[thread]
        for _, link in ended:
            _close(link)

    def publish(
        self,
        event_type: str,
        data: Any,
        *,
        exchange: str | None = None,
        event_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        format: str | None = None,
        unroutable: str | None = None,
    ) -> Event:
        """Publish one event and wait for the broker's confirm; returns the event as sent.

        ``format="flat"`` writes the layout hand-written consumers read (the data's keys at
        the top, with ``event_type``, ``event_id``, ``timestamp`` and ``service``); None
        means the ``event_formats`` setting's for the exchange, else the envelope.

        Raises :class:`~svclink.InvalidEvent` before any I/O for a bad type, payload,
        header, ``format`` or ``timeout`` (a positive, finite number of seconds; None means the
        ``publish_timeout`` setting), :class:`~svclink.UnroutableError` when no queue is
        bound for it, :class:`~svclink.PublishNacked`, :class:`~svclink.PublishTimeout`, or
        :class:`~svclink.BrokerUnavailable` when no broker can be reached in time.
        """
        with self.traced(event_type, exchange):
            sending = self._sending_one(
                event_type, data, exchange=exchange, event_id=event_id, headers=headers, timeout=timeout,
                layout=format, now=time.monotonic(), wall=time.time(), unroutable=unroutable,
            )  # fmt: skip
            self._send(sending)
        return sending.event()

    def publish_many(
        self,
        events: Iterable[tuple[str, Any]],
        *,
        exchange: str | None = None,
        timeout: float | None = None,
        format: str | None = None,
        unroutable: str | None = None,
    ) -> list[Event]:
        """Publish ``(event_type, data)`` pairs pipelined, waiting once for all their confirms.

        All are sent even if some fail; then the first failure is raised, with
        ``published`` (the events confirmed) and ``failed`` (``(event, error)`` pairs)
        attached to it. One bad event refuses the whole batch before any I/O.
        """
        with self.traced("", exchange):
            sending = self._sending_many(
                events,
                exchange=exchange,
                timeout=timeout,
                layout=format,
                now=time.monotonic(),
                wall=time.time(),
                unroutable=unroutable,
            )
            self._send(sending)
        return sending.events()

    def _send(self, sending: Sending) -> None:
        """Send on this thread's connection, reopening it when :class:`Sending` says so."""
        with self._observed(sending, time.monotonic):
            while (batch := sending.batch()) is not None:
                try:
                    link = self._link(sending.deadline)
                    outcomes = link.publish(batch, sending.deadline)
                except (Lost, BrokerUnavailable) as exc:
                    if drops_connection(exc):
                        self._drop(wait=False)
                    sending.failed(exc)
                    continue
                if sending.sent(outcomes, now=time.monotonic(), refusal=link.refusal):
                    self._drop(wait=False)

    def close(self) -> None:
        """Close this thread's connection and those of ended threads (the next publish opens a new one)."""
        self._drop()
        self._close_ended()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _close(link: PublishLink | None) -> None:
    """Close ``link`` if this process opened it (a forked child leaves its parent's socket alone)."""
    if link is not None and link.pid == os.getpid():
        with contextlib.suppress(Exception):
            link.close()


_publishers = PublisherCache(Publisher)


def get_publisher() -> Publisher:
    """The process's publisher for the installed settings (rebuilt when settings change)."""
    return _publishers.get()
