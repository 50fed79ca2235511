"""Consuming over aio-pika: the asyncio twin of :mod:`svclink.sync.consumer`.

Same names, arguments and behaviour, awaited; up to ``prefetch`` handlers run at once.
Every decision comes from :mod:`svclink.core.events`; a lost connection is reopened with
backoff, as :mod:`svclink.aio.publishing` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.context.value import bind
from ..core.events.broker import Lost, is_memory
from ..core.events.consumer import BaseConsumer
from ..core.events.envelope import Event
from ..core.events.handling import Backoff, Disposition, Handle
from ..core.events.message import Delivery
from ..core.events.readiness import check_wait
from ..core.events.running import Phase, State, explain_lost, handler_timeout_error
from ..core.events.topology import ConsumerConfig, topology
from ..core.logs import logger
from ..core.telemetry import HandlerSpan, NoHandlerSpan
from ._deadlines import Deadlines
from ._memory import MemorySession
from ._pika_session import PikaSession
from ._transport import Session

log = logger("svclink.events")

__all__ = ["EventConsumer"]

Handler = Callable[[Event], Awaitable[Any]]


class EventConsumer(BaseConsumer[Handler]):
    """Consumes events from a durable queue bound to a topic exchange, with retries and a dead-letter queue.

    The asyncio twin of :class:`svclink.sync.EventConsumer`: handlers are ``async def``
    (a plain function or a non-callable raises ``TypeError`` when registered), and up to
    ``prefetch`` of them run at once.

    With ``exclusive=True`` the queues belong to the consumer's connection: not durable,
    invisible to other connections, deleted by the broker when the connection closes (a
    listener's own temporary copy of the events; give each process its own queue name).
    """

    asynchronous = True
    _loop: asyncio.AbstractEventLoop | None = None
    _wakeup: asyncio.Event | None = None

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nothing left to wake
                loop.call_soon_threadsafe(wakeup.set)

    def _open(self, config: ConsumerConfig) -> Session:
        topo = topology(config)
        if is_memory(self.settings):
            return MemorySession(self.settings, self.connection_name, topo, config.prefetch)
        return PikaSession(self.settings, self.connection_name, topo, config.prefetch)

    async def run(self) -> None:
        """Consume until :meth:`stop`, reconnecting (with backoff) whenever the broker goes away."""
        config = self._effective_config()
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        if self._stop_requested.is_set():
            self._wakeup.set()
        backoff = Backoff()
        self.state = State.STARTING
        failed = True
        try:
            while not self._stop_requested.is_set():
                session = self._open(config)
                try:
                    lost = await self._serve(session, config, backoff)
                except Lost as exc:
                    lost = str(exc)
                finally:
                    await session.close()
                if lost is not None:
                    self.state = State.RECONNECTING
                    log.warning("consumer %s: %s; reconnecting", config.queue, explain_lost(lost))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), backoff.failed())
            failed = False
        finally:
            self._stopped(failed=failed)
            self._loop = self._wakeup = None

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`run` (another task, or another thread's loop) is consuming: its
        queues are declared and bound and the broker delivers to it. True once it is; False
        when ``timeout`` seconds (None: no limit) pass first, or a run ends without consuming.

        A test publishes after this, knowing the consumer's queue will take the events.
        """
        limit = check_wait(timeout)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # this loop has closed: nobody waits any more
                loop.call_soon_threadsafe(changed.set)

        mark = self._readiness.watch(wake)
        try:
            async with asyncio.timeout(limit):
                while not self._readiness.settled(mark):
                    await changed.wait()
                    changed.clear()
        except TimeoutError:
            pass
        finally:
            self._readiness.unwatch(wake)
        return self._readiness.consuming

    async def _serve(self, session: Session, config: ConsumerConfig, backoff: Backoff) -> str | None:
        """Consume on one session until stop (None) or until it is lost (the reason)."""
        assert self._wakeup is not None
        in_flight: set[asyncio.Task[None]] = set()
        slots = None if self.concurrency is None else asyncio.Semaphore(self.concurrency)
        queued: set[Any] = set()  # deliveries waiting for a slot, by token
        deadlines = Deadlines()  # one loop timer for the handlers' time limits
        stopping = False

        async def on_delivery(delivery: Delivery, token: Any) -> None:
            if stopping:
                await session.reject(token)
                return
            if slots is not None:
                queued.add(token)
                await slots.acquire()
                if token not in queued:  # given back to the queue by the stop meanwhile
                    slots.release()
                    return
                queued.discard(token)
            task = asyncio.current_task()
            assert task is not None
            in_flight.add(task)
            try:
                decision = await self._process(config, delivery, deadlines)
                await session.finish(token, delivery, decision)
            except Lost as exc:
                log.warning("consumer %s: %s", config.queue, exc)
            finally:
                in_flight.discard(task)
                if slots is not None:
                    slots.release()

        starting = asyncio.ensure_future(session.start(on_delivery))
        await _first(self._wakeup.wait(), starting)
        if not starting.done():  # stop() while the broker had not answered: nothing consumed yet
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return None
        starting.result()  # raises what the start raised (Lost, EventError)
        backoff.connected()
        self.state = State.CONSUMING
        log.info("consumer %s: consuming", config.queue)
        lost = asyncio.ensure_future(session.lost.wait())
        try:
            await _first(self._wakeup.wait(), lost)
            stopping = True
            if self._shutdown.requested:
                self.state = State.DRAINING
            await session.stop_consuming()
            for token in list(queued):
                queued.discard(token)
                await session.reject(token)
            if lost.done():  # the handlers in flight finish; their messages come back after the reconnect
                await asyncio.gather(*in_flight, return_exceptions=True)
            else:
                await self._drain(in_flight, lost, config)
        finally:
            lost.cancel()
        return None if self._shutdown.requested else session.why

    async def _drain(
        self, in_flight: set[asyncio.Task[None]], lost: asyncio.Future[Any], config: ConsumerConfig
    ) -> None:
        """Wait for the handlers in flight within the grace; abandon (cancel) those left after it."""
        assert self._wakeup is not None
        while in_flight and not lost.done():
            if self._shutdown.phase(time.monotonic()) is Phase.ABANDONED:
                log.warning(
                    "consumer %s: stopped with %d handlers still running; their messages go back to "
                    "the queue", config.queue, len(in_flight),
                )  # fmt: skip
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                return
            self._wakeup.clear()  # a second stop() sets it again
            if self._shutdown.phase(time.monotonic()) is Phase.ABANDONED:
                continue
            woken = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait(
                    [*in_flight, woken, lost],
                    timeout=self._shutdown.remaining(time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                woken.cancel()

    async def _process(self, config: ConsumerConfig, delivery: Delivery, deadlines: Deadlines) -> Disposition:
        step = self._receive(config, delivery, now=time.monotonic(), wall=time.time())
        if not isinstance(step, Handle):
            return step
        error = await _call(step, deadlines, self.handler_timeout, self.traced(config, delivery, step))
        return self._settle(config, delivery, step, error, time.monotonic(), wall=time.time())


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until one of ``waits`` is done; cancel the others."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            if future is not waits[-1]:
                future.cancel()


async def _call(
    step: Handle[Handler], deadlines: Deadlines, limit: float, span: HandlerSpan | NoHandlerSpan
) -> BaseException | None:
    """Run a handler in its span, with the publisher's request context bound, for at most
    ``limit`` seconds (one loop timer for all the session's handlers: ``deadlines``); its
    exception (or :class:`~svclink.HandlerTimeout`) is the outcome (and the span's)."""
    with span:
        error = await _run(step, deadlines, limit)
        if error is not None:
            span.failed(error)
    return error


async def _run(step: Handle[Handler], deadlines: Deadlines, limit: float) -> BaseException | None:
    deadline = deadlines.wait(time.monotonic() + limit)
    try:
        with bind(step.event.context), deadline:
            await step.handler(step.event)
    except TimeoutError as exc:
        return handler_timeout_error(limit) if deadline.expired else exc
    except Exception as exc:
        return exc
    return None
