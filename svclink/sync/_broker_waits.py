"""Bounded waits for the broker once a sync consumer is stopping (see :mod:`svclink.core.events.stopping`).

pika's ``BlockingConnection`` waits for a reply (a declaration's, the close's) with no
limit; a broker that is frozen or cut off answers nothing, and only the heartbeat ends
the wait, a minute or more later. :class:`BrokerWaits` marks each such wait, and a
timer in the connection's own loop (it runs while pika waits) drops the connection once
the stop watch says so; the wait then fails as a lost connection, and ``run()`` returns.
Both reach below pika's blocking adapter (its select connection, ``_impl``), as its own
heartbeat check does: the blocking adapter has no timer that runs during a wait.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions

from ..core.events.stopping import StopWatch

#: how often the timer looks (seconds): the bound is met to within this
TICK = 0.2


class BrokerWaits:
    """The waits of one consumer connection, and the timer that abandons it when a stop runs long."""

    def __init__(
        self, connection: pika.BlockingConnection, stopping: threading.Event, watch: StopWatch
    ) -> None:
        self._connection = connection
        self._stopping = stopping
        self._watch = watch
        self._since: float | None = None  # when the wait under way began
        self._look()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark a call that waits for the broker's reply."""
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def _look(self) -> None:
        """The timer: runs on whichever thread is servicing the connection, and again every TICK."""
        if self._watch.abandon(
            stopping=self._stopping.is_set(), waiting_since=self._since, now=time.monotonic()
        ):
            self.abandon()
            return
        # the timer goes on pika's own loop: BlockingConnection.call_later's timers run only in
        # process_data_events(), never while a call waits for its reply
        impl: Any = getattr(self._connection, "_impl", None)
        if impl is not None and not impl.is_closed:
            impl.ioloop.call_later(TICK, self._look)

    def abandon(self) -> None:
        """Drop the connection without waiting for the broker (the way a missed heartbeat does)."""
        impl: Any = getattr(self._connection, "_impl", None)
        terminate = getattr(impl, "_terminate_stream", None)
        if impl is None or terminate is None or impl.is_closed:
            return
        bound = self._watch.bound
        terminate(pika.exceptions.StreamLostError(f"the broker did not answer within {bound:g}s of stop()"))
