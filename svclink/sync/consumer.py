"""Consuming over pika: a blocking consumer, handlers on its thread or on threads of their own.

Only I/O lives here. What becomes of a consumed message (ack, retry, dead-letter) is
decided in :mod:`svclink.core.events`; the connection is a ``_pika_session`` (RabbitMQ)
or a ``_memory`` session (``memory://``). Here: reconnect with backoff, handlers run
with the publisher's context bound.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.context.value import bind
from ..core.events.broker import Lost, is_memory
from ..core.events.consumer import BaseConsumer
from ..core.events.envelope import Event
from ..core.events.handling import Backoff, Handle
from ..core.events.readiness import check_wait
from ..core.events.running import Phase, State, explain_lost, handler_timeout_error, overdue
from ..core.events.topology import ConsumerConfig, topology
from ..core.logs import logger
from ..core.telemetry import HandlerSpan, NoHandlerSpan
from ._handlers import HandlerThreads, Job
from ._memory import MemorySession
from ._pika_session import PikaSession
from ._transport import Received, Session

log = logger("svclink.events")

__all__ = ["EventConsumer"]

Handler = Callable[[Event], Any]


class EventConsumer(BaseConsumer[Handler]):
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    Register handlers with :meth:`on` (an event type or a pattern such as ``user.*``) and
    :meth:`default`, then call :meth:`run`, which blocks until :meth:`stop`. Handlers are
    plain functions: a non-callable or an ``async def`` raises ``TypeError`` when
    registered. Bad arguments raise :class:`~svclink.InvalidEvent` naming the argument,
    before any I/O.

    With ``exclusive=True`` the queues belong to the consumer's connection: not durable,
    invisible to other connections, deleted by the broker when the connection closes (a
    listener's own temporary copy of the events; give each process its own queue name).
    """

    asynchronous = False
    _session: Session | None = None

    def _wake(self) -> None:
        session = self._session
        if session is not None:
            session.wake()

    def _open(self, config: ConsumerConfig) -> Session:
        topo = topology(config)
        if is_memory(self.settings):
            return MemorySession(self.settings, self.connection_name, topo, config.prefetch)
        return PikaSession(self.settings, self.connection_name, topo, config.prefetch, self._stop_requested)

    def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away.

        With ``concurrency`` above one, handlers run on that many threads of their own while
        this thread keeps the connection; otherwise each runs on this thread, in turn.
        """
        config = self._effective_config()
        backoff = Backoff()
        self.state = State.STARTING
        failed = True
        try:
            while not self._stop_requested.is_set():
                try:
                    self._session = self._open(config)
                except Lost as exc:
                    self.state = State.RECONNECTING
                    log.warning("consumer %s: broker unavailable (%s); retrying", config.queue, exc)
                    self._stop_requested.wait(backoff.failed())
                    continue
                backoff.connected()
                self.state = State.CONSUMING
                log.info("consumer %s: consuming", config.queue)
                try:
                    if (self.concurrency or 1) > 1:
                        self._serve_concurrently(self._session, config, self.concurrency or 1)
                    else:
                        self._serve(self._session, config)
                except Lost as exc:
                    self.state = State.RECONNECTING
                    log.warning(
                        "consumer %s: connection lost (%s); reconnecting",
                        config.queue,
                        explain_lost(str(exc)),
                    )
                    self._stop_requested.wait(backoff.failed())
                finally:
                    session, self._session = self._session, None
                    session.close()
            failed = False
        finally:
            self._stopped(failed=failed)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`run` (on another thread) is consuming: its queues are declared and
        bound and the broker delivers to it. True once it is; False when ``timeout`` seconds
        (None: no limit) pass first, or a run ends without consuming.

        A test publishes after this, knowing the consumer's queue will take the events.
        """
        limit = check_wait(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        changed = threading.Event()
        mark = self._readiness.watch(changed.set)
        try:
            while not self._readiness.settled(mark):
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not changed.wait(left):
                    break
                changed.clear()
        finally:
            self._readiness.unwatch(changed.set)
        return self._readiness.consuming

    def _serve(self, session: Session, config: ConsumerConfig) -> None:
        """One handler at a time, on this thread; a stop returns after the one in hand."""
        while not self._stop_requested.is_set():
            received = session.next(0.5)
            if received is not None:
                self._handle(session, config, received)
        self.state = State.DRAINING

    def _handle(self, session: Session, config: ConsumerConfig, received: Received) -> None:
        """Run the message's handler on this thread and settle it; one over ``handler_timeout``
        is settled as failed meanwhile (by the thread that keeps the connection)."""
        delivery = received.delivery
        step = self._receive(config, delivery, now=time.monotonic(), wall=time.time())
        if not isinstance(step, Handle):
            session.finish(received, step)
            return
        unsettled = threading.Lock()  # whoever takes it first settles the message

        def overdue() -> None:
            if unsettled.acquire(blocking=False):
                error = handler_timeout_error(self.handler_timeout)
                session.finish(
                    received, self._settle(config, delivery, step, error, time.monotonic(), wall=time.time())
                )

        span = self.traced(config, delivery, step)
        error = session.run(lambda: _call(step, span), self.handler_timeout, overdue)
        if unsettled.acquire(blocking=False):
            session.finish(
                received, self._settle(config, delivery, step, error, time.monotonic(), wall=time.time())
            )

    def _serve_concurrently(self, session: Session, config: ConsumerConfig, concurrency: int) -> None:
        """Up to ``concurrency`` handlers on threads of their own; this thread keeps the connection."""
        threads = HandlerThreads(concurrency, session.wake, f"svclink-handler:{config.queue}")
        running: dict[int, Job] = {}
        waiting: deque[Received] = deque()
        try:
            while (phase := self._shutdown.phase(time.monotonic())) is Phase.RUNNING:
                self._settle_done(session, config, threads, running)
                while waiting and len(running) < concurrency:
                    self._start(session, config, threads, running, waiting.popleft())
                received = session.next(self._wait(running))
                if received is not None:
                    waiting.append(received)
            self.state = State.DRAINING
            session.stop_consuming()
            for received in waiting:
                session.reject(received)
            while running and phase is Phase.DRAINING:
                received = session.next(min(self._wait(running), self._shutdown.remaining(time.monotonic())))
                if received is not None:  # sent before the broker saw the cancel
                    session.reject(received)
                self._settle_done(session, config, threads, running)
                phase = self._shutdown.phase(time.monotonic())
            if running:
                log.warning(
                    "consumer %s: stopped with %d handlers still running; their messages go back to "
                    "the queue", config.queue, len(running),
                )  # fmt: skip
                for job in running.values():
                    threads.abandon(job)
        finally:
            threads.close()

    def _wait(self, running: dict[int, Job]) -> float:
        """How long to wait for I/O: until the first handler in flight runs over its limit, at most 0.5 s."""
        if not running:
            return 0.5
        first = min(job.started for job in running.values())
        return max(0.0, min(0.5, first + self.handler_timeout - time.monotonic()))

    def _start(
        self,
        session: Session,
        config: ConsumerConfig,
        threads: HandlerThreads,
        running: dict[int, Job],
        received: Received,
    ) -> None:
        step = self._receive(config, received.delivery, now=time.monotonic(), wall=time.time())
        if isinstance(step, Handle):
            span = self.traced(config, received.delivery, step)
            running[received.tag] = job = Job(received, step, lambda s: _call(s, span))
            threads.start(job)
        else:
            session.finish(received, step)

    def _settle_done(
        self, session: Session, config: ConsumerConfig, threads: HandlerThreads, running: dict[int, Job]
    ) -> None:
        """Settle the messages whose handlers returned, and those whose handlers ran over the limit."""
        while True:
            try:
                job, error = threads.done.get_nowait()
            except queue.Empty:
                break
            if running.get(job.received.tag) is job:
                del running[job.received.tag]
                session.finish(
                    job.received,
                    self._settle(
                        config, job.received.delivery, job.step, error, time.monotonic(), wall=time.time()
                    ),
                )
        now = time.monotonic()
        for job in [j for j in running.values() if overdue(j.started, self.handler_timeout, now)]:
            del running[job.received.tag]
            threads.abandon(job)
            error = handler_timeout_error(self.handler_timeout)
            session.finish(
                job.received,
                self._settle(
                    config, job.received.delivery, job.step, error, time.monotonic(), wall=time.time()
                ),
            )


def _call(step: Handle[Handler], span: HandlerSpan | NoHandlerSpan) -> BaseException | None:
    """Run a handler in its span, with the publisher's request context bound; its exception
    is the outcome (and the span's)."""
    with span:
        try:
            with bind(step.event.context):
                step.handler(step.event)
        except Exception as exc:
            span.failed(exc)
            return exc
    return None
