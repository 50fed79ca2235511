"""What an event consumer decides without I/O; the sync and aio consumers only add the consume loop.

The consuming half of svclink's ``BaseClient``: the arguments of ``EventConsumer(...)``
checked into a :class:`~svclink.core.events.topology.ConsumerConfig`, the handler table that
``on()``/``default()`` fill, the bindings a run declares, and the steps before and after
a handler runs (:func:`~svclink.core.events.handling.receive`, :func:`~svclink.core.events.handling.settle`
and their log lines). How a handler is called (inline on the consumer's thread, or awaited) and how
messages arrive is each side's own.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar, cast

import attrs

from ..context.incoming import log_incoming
from ..context.value import bind
from ..errors import EventError
from ..logs import handling
from ..settings import Settings, get_settings
from ..telemetry import HandlerSpan, NoHandlerSpan, consumer_span, report_consume, span, tracing
from .broker import default_name
from .envelope import Event
from .handling import Disposition, Handle, HandlerTable, log_disposition, quiet, receive, settle
from .inbox import InboxStore, deduplicated, store_for
from .message import Delivery
from .readiness import Readiness
from .running import Shutdown, State, check_concurrency, check_seconds, sized_prefetch
from .topology import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_DELAYS,
    ConsumerConfig,
    Topology,
    binding_patterns,
    topology,
)

H = TypeVar("H", bound=Callable[..., Any])
F = TypeVar("F", bound=Callable[[Event], Any])


def _awaitable(handler: object) -> bool:
    """Whether calling ``handler`` makes a coroutine: an ``async def``, or an object whose
    ``__call__`` is one."""
    return inspect.iscoroutinefunction(handler) or (
        callable(handler) and inspect.iscoroutinefunction(type(handler).__call__)
    )


def _asynchronous(handler: object) -> bool:
    """Whether ``handler`` is of the asyncio kind: a coroutine or an async generator function."""
    return _awaitable(handler) or inspect.isasyncgenfunction(handler)


def check_handler(handler: object, *, asynchronous: bool) -> None:
    """Refuse, with a ``TypeError`` that names the fix, a handler this side cannot run.

    A non-callable is refused on both sides; so is an ``async def`` handler on the sync
    side (calling it would only make a coroutine that never runs) and a plain function on
    the aio side (svclink awaits what a handler returns).
    """
    if not callable(handler):
        raise TypeError(f"an event handler must be a function, not a {type(handler).__name__}")
    if not asynchronous and _asynchronous(handler):
        raise TypeError(
            "svclink.sync.EventConsumer handlers must be plain functions, not async def: "
            "register async def handlers on svclink.aio.EventConsumer"
        )
    if asynchronous and not _awaitable(handler):
        raise TypeError(
            "svclink.aio.EventConsumer handlers must be async def functions: make the handler "
            "async def, or register plain functions on svclink.sync.EventConsumer"
        )


#: every consumer object alive in the process, for :func:`not_consuming`
live_consumers: weakref.WeakSet[BaseConsumer[Any]] = weakref.WeakSet()


def not_consuming() -> list[str]:
    """One sentence per consumer whose run has started but that is not consuming now."""
    return [
        f"consumer {consumer.config.queue!r} is not consuming ({consumer.state.value})"
        for consumer in list(live_consumers)
        if consumer.state in (State.STARTING, State.RECONNECTING)
    ]


class BaseConsumer(Generic[H]):
    """A consumer's queue, bindings, retry policy and handlers: everything but the consume loop.

    Every argument is checked here, when the consumer is made, before any I/O: bad ones
    raise :class:`~svclink.InvalidEvent` (a ValueError) naming the argument. Handlers are
    checked when registered: one that is not callable, or of the other side's kind (an
    ``async def`` on svclink.sync, a plain function on svclink.aio), raises ``TypeError``.
    """

    #: whether handlers are awaited (``async def``, svclink.aio) or called (svclink.sync)
    asynchronous: ClassVar[bool] = False

    def __init__(
        self,
        queue: str,
        *,
        exchange: str | None = None,
        bindings: Iterable[str] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delays: Iterable[float] = DEFAULT_RETRY_DELAYS,
        prefetch: int | None = None,
        queue_type: str | None = None,
        exclusive: bool = False,
        strict: bool = False,
        concurrency: int | None = None,
        handler_timeout: float | None = None,
        grace: float | None = None,
        settings: Settings | None = None,
        connection_name: str | None = None,
        dedupe: bool | InboxStore | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        #: handlers run at once (None: one at a time on svclink.sync, up to prefetch on svclink.aio)
        self.concurrency = check_concurrency(
            self.settings.consumer_concurrency if concurrency is None else concurrency
        )
        #: seconds a handler may run before it counts as failed
        self.handler_timeout = check_seconds(
            "handler_timeout", self.settings.handler_timeout if handler_timeout is None else handler_timeout
        )
        grace = check_seconds("grace", self.settings.consumer_grace if grace is None else grace)
        #: the inbox store every handler deduplicates through unless registered with ``dedupe=False``
        self._inbox = store_for(dedupe or None, None, asynchronous=self.asynchronous)
        #: the bindings asked for; none (or empty) means those the handlers need
        self._bindings = None if bindings is None else binding_patterns(bindings)
        self.config = ConsumerConfig(
            queue=queue,
            exchange=self.settings.event_exchange if exchange is None else exchange,
            bindings=self._bindings or ("#",),
            max_attempts=max_attempts,
            retry_delays=retry_delays,
            prefetch=sized_prefetch(prefetch, self.settings.prefetch_count, self.concurrency),
            queue_type=queue_type,
            exclusive=exclusive,
            strict=strict,
        )
        self.connection_name = connection_name or default_name(self.settings, f"consumer:{queue}")
        self._table: HandlerTable[H] = HandlerTable()
        #: set by :meth:`stop` (from any thread); a run clears it when it returns
        self._stop_requested = threading.Event()
        self._shutdown = Shutdown(grace)
        #: whether a run is consuming, for ``wait_ready()``: every change of :attr:`state` is reported
        self._readiness = Readiness()
        self._state = State.STOPPED
        live_consumers.add(self)

    @property
    def state(self) -> State:
        """What the consumer is doing (a readiness probe reads it)."""
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        self._state = state
        if state is State.STARTING:
            self._readiness.run_started()
        self._readiness.report(consuming=state is State.CONSUMING)

    @property
    def grace(self) -> float:
        """Seconds a stop waits for the handlers in flight."""
        return self._shutdown.grace

    @property
    def consuming(self) -> bool:
        """Whether the consumer is connected and consuming (ready)."""
        return self.state is State.CONSUMING

    def stop(self) -> None:
        """Ask ``run()`` to return: take no more messages, finish those in flight, return.

        The handlers in flight get ``grace`` seconds to finish (each is acked when it
        does); messages not started go back to the queue. A second call, or the grace
        running out, abandons the handlers still running: their messages go back to the
        queue unacked, with no attempt counted. A plain method, safe to call from a
        handler, another thread, a signal handler or (aio) another task; called before
        ``run()``, it makes the next run return at once.
        """
        self._shutdown.request()
        self._stop_requested.set()
        if self.state is State.CONSUMING:  # not ready from now on, even while a handler finishes
            self.state = State.DRAINING
        self._wake()

    def _stopped(self, *, failed: bool) -> None:
        """A run returned (or raised: ``failed``): forget its stop, so that the next run consumes again."""
        self._stop_requested.clear()
        self._shutdown.reset()
        self._state = State.STOPPED
        self._readiness.run_ended(failed=failed)

    def _wake(self) -> None:
        """Hook: interrupt a running consumer's wait for messages, so that it sees the stop."""

    def _checked(self, handler: object) -> H:
        check_handler(handler, asynchronous=self.asynchronous)
        return cast(H, handler)

    def on(self, pattern: str, *, dedupe: bool | InboxStore | None = None) -> Callable[[F], F]:
        """Decorator: handle events whose type is ``pattern`` or matches it (``*``, ``#``).

        ``dedupe=True`` runs the handler at most once per event id on this consumer's queue,
        through the consumer's inbox store (or the default one: Django's, with its app
        installed); ``dedupe=<store>`` names the store; ``dedupe=False`` opts out of the
        consumer's. A wrong ``dedupe`` is refused here, before any I/O.
        """
        store = store_for(dedupe, self._inbox, asynchronous=self.asynchronous)

        def register(handler: F) -> F:
            checked = self._checked(handler)
            self._table.add(pattern, checked if store is None else self._deduplicated(checked, store))
            return handler

        return register

    def default(self, handler: F) -> F:
        """Decorator: handle every event no other handler matches (the same as ``on("#")``)."""
        checked = self._checked(handler)
        self._table.set_default(checked if self._inbox is None else self._deduplicated(checked, self._inbox))
        return handler

    def wrap_handlers(self, wrapper: Callable[[H], H]) -> None:
        """Wrap every handler registered so far: ``wrapper(handler)`` runs in its place (what a
        framework needs around each message, such as Django's database connection hygiene)."""
        self._table.wrap(wrapper)

    def _deduplicated(self, handler: H, store: InboxStore) -> H:
        return cast(H, deduplicated(handler, store, self.config.queue))

    def _effective_config(self) -> ConsumerConfig:
        """The config a run declares: the bindings asked for, else those the handlers need."""
        if not self._table:
            raise EventError("the consumer has no handlers: register one with @consumer.on(...)")
        return attrs.evolve(self.config, bindings=self._bindings or self._table.patterns())

    def topology(self) -> Topology:
        """The exchange, queues and bindings a run declares (``svclink declare`` declares them ahead)."""
        return topology(self._effective_config())

    def _receive(
        self, config: ConsumerConfig, delivery: Delivery, *, now: float, wall: float
    ) -> Handle[H] | Disposition:
        """The first step for a message: a handler to run, or (logged) what to do with it at once."""
        step = receive(delivery, config, self._table, self.settings, now=now, wall=wall)
        if isinstance(step, Handle):
            log_incoming(step.incoming, "event")
        else:
            log_disposition(config, delivery, step)
            report_consume(self.settings, config, delivery, step)
        return step

    def _settle(
        self,
        config: ConsumerConfig,
        delivery: Delivery,
        step: Handle[H],
        error: BaseException | None,
        now: float | None = None,
        *,
        wall: float | None = None,
    ) -> Disposition:
        """What becomes of a message whose handler returned (``error`` None) or raised (logged);
        ``now`` (monotonic) gives the handler's duration to the observers, ``wall`` (the epoch
        clock) is when a dead letter died."""
        decision = settle(delivery, config, error, wall=wall)
        event = step.event
        if not quiet(decision):  # the log line's context, bound only when there is a line
            with bind(event.context), handling(event.event_id, event.event_type):
                log_disposition(config, delivery, decision, event, error)
        duration = None if now is None else now - step.received
        report_consume(self.settings, config, delivery, decision, step.event, error, duration)
        return decision

    def traced(
        self, config: ConsumerConfig, delivery: Delivery, step: Handle[H]
    ) -> HandlerSpan | NoHandlerSpan:
        """The CONSUMER span of one handler run, child of the publisher's trace (a shared
        no-op without OpenTelemetry); the driver runs the handler inside it."""
        event = step.event
        if not tracing():
            return NoHandlerSpan(event)
        name, attributes = consumer_span(
            config.queue, delivery, event.event_type, event.event_id, event.attempt
        )
        context = event.context
        parent = None
        if context is not None and context.traceparent is not None:
            parent = {"traceparent": context.traceparent, "tracestate": context.tracestate or ""}
        return HandlerSpan(event, span("CONSUMER", name, attributes, parent), config, delivery)
