"""What a publisher decides without I/O; the sync and aio publishers only add the send loop.

This is the publishing half of svclink's ``BaseClient``: checking a publish's arguments,
building its messages (:func:`~svclink.core.events.message.prepare`), its deadline, and
:class:`Sending`, the state machine a driver feeds with what its connection reported.
A driver's loop is then only::

    while (batch := sending.batch()) is not None:
        try:
            outcomes = <send batch on this loop's / thread's connection>
        except (Lost, BrokerUnavailable) as exc:   # nothing of the batch went out
            if drops_connection(exc):
                <drop the connection>
            sending.failed(exc)
            continue
        if sending.sent(outcomes, now=<monotonic clock>):
            <drop the connection>
    return sending.event()   # or sending.events()
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

import attrs

from ..errors import BrokerUnavailable, InvalidEvent, PublishError
from ..locks import ForkSafeLock
from ..observe import Observer, PublishInfo, notify, watching
from ..settings import Settings, get_settings
from ..telemetry import NO_SPAN, annotate, producer_span, span, tracing
from .broker import Lost, default_name
from .envelope import Event
from .message import OutgoingMessage, prepare
from .outcomes import SEND_ATTEMPTS, Outcome, publish_error, resolve
from .unroutable import policy, report

#: the longest a publish may be given, in seconds (a day): the drivers' timers and polls take
#: no more, and a publish that waits longer than that for a confirm is lost anyway
MAX_PUBLISH_TIMEOUT = 86400.0


def publish_deadline(settings: Settings, timeout: object, now: float) -> float:
    """The monotonic time a publish must be done by: ``timeout`` seconds from ``now``.

    ``None`` means the ``publish_timeout`` setting (used up to :data:`MAX_PUBLISH_TIMEOUT`);
    anything but a positive number of seconds up to :data:`MAX_PUBLISH_TIMEOUT` is
    refused with :class:`~svclink.InvalidEvent` before any I/O.
    """
    if timeout is None:
        return now + min(settings.publish_timeout, MAX_PUBLISH_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise InvalidEvent(
            "timeout must be a positive, finite number of seconds (or None for the publish_timeout setting)"
        )
    if timeout > MAX_PUBLISH_TIMEOUT:
        raise InvalidEvent(f"timeout must be at most {MAX_PUBLISH_TIMEOUT:.0f} seconds (a day)")
    return now + timeout


def drops_connection(error: Exception) -> bool:
    """Whether a send that failed with ``error`` before anything went out drops its connection.

    A connection is replaced only when it is dead, the same on both sides: :class:`Lost`
    (closed by the broker or the network, found so before the send) is dead, and the next
    publish opens a new one. :class:`~svclink.BrokerUnavailable` says no connection could be
    opened: there is none to drop, and a connection some other publish opened meanwhile is
    not to be thrown away for it. An answer about a message never drops one either: a nack
    or a return leaves a healthy connection, which the next publish uses; a channel the broker
    closed on a message is dead, and :meth:`Sending.sent` says so.
    """
    return isinstance(error, Lost)


def _pairs(events: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise InvalidEvent("publish_many takes an iterable of (event_type, data) pairs")
    pairs = list(events)
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise InvalidEvent("publish_many takes an iterable of (event_type, data) pairs")
    return [(t, d) for t, d in pairs]


class Sending:
    """One publish call on its way: its messages, their results so far, and what to send next.

    A batch goes out on at most :data:`~svclink.core.events.outcomes.SEND_ATTEMPTS` connections: a
    connection found dead before anything was sent is replaced and the batch sent again;
    messages lost with their connection after being sent are sent once more (with the
    same event ids) if there is time.
    """

    def __init__(
        self,
        prepared: Sequence[tuple[Event, OutgoingMessage]],
        deadline: float,
        unrouted: Callable[[OutgoingMessage, float], None] | None = None,
    ) -> None:
        #: the monotonic time by which every confirm must be in
        self.deadline = deadline
        #: under ``unroutable="warn"``: told of each message the broker returned, which is then
        #: no error (None: a returned message raises :class:`~svclink.UnroutableError`)
        self._unrouted = unrouted
        self._returned: set[int] = set()  # positions returned under "warn"
        events, messages = zip(*prepared, strict=True) if prepared else ((), ())
        self._events: tuple[Event, ...] = events
        self._messages: tuple[OutgoingMessage, ...] = messages
        #: the errors by position; empty in the usual case, and then not tracked by the garbage collector
        self._errors: dict[int, PublishError | None] = {}
        self._todo: Sequence[int] = range(len(prepared))  # positions still waiting for a result
        self._attempt = 1
        self._resending = False  # the messages in _todo went out once and lost their confirms

    @classmethod
    def of_messages(cls, messages: Sequence[OutgoingMessage], deadline: float) -> Sending:
        """A send of messages built earlier (an outbox's rows): its results are read with :meth:`errors`."""
        sending = cls((), deadline)
        sending._messages = tuple(messages)
        sending._todo = range(len(sending._messages))
        return sending

    def errors(self) -> Mapping[int, PublishError]:
        """The errors of the messages that did not land, by position (empty when all did)."""
        return {i: error for i, error in self._errors.items() if error is not None}

    def batch(self) -> Sequence[OutgoingMessage] | None:
        """The messages to send now, or None when every message has its result."""
        if not self._todo:
            return None
        if len(self._todo) == len(self._messages):
            return self._messages
        return [self._messages[i] for i in self._todo]

    def failed(self, error: Exception) -> None:
        """The send failed before anything of the batch went out (``Lost`` or ``BrokerUnavailable``).

        Raises :class:`~svclink.BrokerUnavailable` when no connection can take the batch;
        returns when it is worth sending again (or when resent messages are given up).
        """
        if self._resending:  # they may or may not have landed: a publish error, not "unavailable"
            for i in self._todo:
                self._errors[i] = publish_error(Outcome.LOST, self._messages[i], f"not sent again: {error}")
            self._todo = ()
            return
        if isinstance(error, BrokerUnavailable):
            raise error
        if self._attempt >= SEND_ATTEMPTS:
            raise BrokerUnavailable(f"connection to the broker lost: {error}") from None
        self._attempt += 1

    def sent(self, outcomes: Sequence[Outcome], *, now: float, refusal: str = "") -> bool:
        """Record what became of the batch (one outcome each); answers whether to drop the connection.

        ``refusal`` is the broker's reason for the channel it closed on a message
        (:data:`~svclink.core.events.outcomes.Outcome.REFUSED`), which its error repeats.
        """
        if outcomes.count(Outcome.ACKED) == len(outcomes):  # the usual case, without sorting anything
            self._todo = ()
            return False
        step = resolve(outcomes, attempt=self._attempt, late=now >= self.deadline)
        for position, outcome in step.final:
            i = self._todo[position]
            if outcome is Outcome.RETURNED and self._unrouted is not None:
                self._returned.add(i)
                self._unrouted(self._messages[i], now)
                continue
            detail = refusal if outcome is Outcome.REFUSED else ""
            self._errors[i] = publish_error(outcome, self._messages[i], detail)
        self._todo = tuple(self._todo[p] for p in step.retry)
        self._resending = True
        self._attempt += 1
        return step.drop

    def report(self, observers: Sequence[Observer], latency: float, raised: BaseException | None) -> None:
        """Tell ``observers`` (``on_publish``) what became of each message: confirmed, its
        publish error, or (for the messages still unsettled) what the send raised."""
        for i, message in enumerate(self._messages):
            error = self._errors.get(i)
            unsettled = raised is not None and i in self._todo
            name = type(error).__name__ if error is not None else type(raised).__name__ if unsettled else None
            info = PublishInfo(
                exchange=message.exchange, event_type=message.routing_key, latency=latency, error=name
            )
            notify(observers, "on_publish", info)

    def event(self) -> Event:
        """The one event of :meth:`publish`, or its error raised."""
        error = self._errors.get(0)
        if error is not None:
            raise error
        return self._as_published(0)

    def _as_published(self, position: int) -> Event:
        event = self._events[position]
        return attrs.evolve(event, routed=False) if position in self._returned else event

    def events(self) -> list[Event]:
        """The events of :meth:`publish_many`; on any failure the first error is raised, with
        ``published`` (the events confirmed) and ``failed`` (``(event, error)`` pairs) on it."""
        outcomes = [(self._as_published(i), self._errors.get(i)) for i in range(len(self._events))]
        failed = [(event, error) for event, error in outcomes if error is not None]
        if failed:
            first = failed[0][1]
            first.published = tuple(event for event, error in outcomes if error is None)
            first.failed = tuple(failed)
            raise first
        return [event for event, _ in outcomes]


class Observed:
    """A send watched by the settings' observers: on the way out, each message is reported."""

    def __init__(self, observers: Sequence[Observer], sending: Sending, clock: Callable[[], float]) -> None:
        self._observers, self._sending, self._clock = observers, sending, clock
        self._started = clock()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, raised: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._sending.report(self._observers, self._clock() - self._started, raised)


#: what a send is watched by when no observer is configured: nothing, at no cost
_UNOBSERVED = contextlib.nullcontext()


class BasePublisher:
    """A publisher's settings and connection name, and everything a publish decides before I/O."""

    def __init__(self, settings: Settings | None = None, *, connection_name: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.connection_name = connection_name or default_name(self.settings, "publisher")

    def _observed(self, sending: Sending, clock: Callable[[], float]) -> AbstractContextManager[None]:
        """Wrap a send (``with``) so that ``Observer.on_publish`` hears of each of its messages;
        ``clock`` is the driver's monotonic clock, for the latency."""
        observers = self.settings.observers
        return Observed(observers, sending, clock) if watching(observers) else _UNOBSERVED

    def traced(self, event_type: str, exchange: str | None) -> Any:
        """The PRODUCER span of one publish (or batch), current while it is prepared and sent,
        so the message's trace headers name it; a shared no-op without OpenTelemetry."""
        if not tracing():
            return NO_SPAN
        name, attributes = producer_span(exchange or self.settings.event_exchange, str(event_type))
        return span("PRODUCER", name, attributes)

    def _unrouted(self, unroutable: str | None) -> Callable[[OutgoingMessage, float], None] | None:
        """What a publish does with a returned message: report it (``"warn"``) or None (raise)."""
        if policy(self.settings, unroutable) == "raise":
            return None
        settings = self.settings
        return lambda message, now: report(settings, message, now=now)

    def _sending_one(
        self,
        event_type: str,
        data: Any,
        *,
        exchange: str | None,
        event_id: str | None,
        headers: Mapping[str, Any] | None,
        timeout: float | None,
        now: float,
        wall: float,
        layout: str | None = None,
        unroutable: str | None = None,
    ) -> Sending:
        """Check a :meth:`publish` and build its message; ``now``/``wall`` are the monotonic/epoch clocks."""
        deadline = publish_deadline(self.settings, timeout, now)
        unrouted = self._unrouted(unroutable)
        prepared = prepare(
            self.settings,
            event_type,
            data,
            exchange=exchange,
            event_id=event_id,
            occurred_at=datetime.fromtimestamp(wall, UTC),
            wall=wall,
            headers=headers,
            layout=layout,
        )
        if tracing():
            annotate({"messaging.message.id": prepared[0].event_id})
        return Sending([prepared], deadline, unrouted)

    def _sending_many(
        self,
        events: Iterable[tuple[str, Any]],
        *,
        exchange: str | None,
        timeout: float | None,
        now: float,
        wall: float,
        layout: str | None = None,
        unroutable: str | None = None,
    ) -> Sending:
        """Check a :meth:`publish_many` and build all its messages; one bad event refuses them all."""
        deadline = publish_deadline(self.settings, timeout, now)
        unrouted = self._unrouted(unroutable)
        at = datetime.fromtimestamp(wall, UTC)
        prepared = [
            prepare(
                self.settings,
                t,
                d,
                exchange=exchange,
                event_id=None,
                occurred_at=at,
                wall=wall,
                layout=layout,
            )
            for t, d in _pairs(events)
        ]
        return Sending(prepared, deadline, unrouted)


P = TypeVar("P", bound=BasePublisher)


class PublisherCache(Generic[P]):
    """The process's publisher for the installed settings, rebuilt when the settings change.

    Shared by ``svclink.sync.get_publisher`` and ``svclink.aio.get_publisher``.
    """

    def __init__(self, factory: Callable[[Settings], P]) -> None:
        self._factory = factory
        self._lock = ForkSafeLock()
        self._publisher: P | None = None

    def get(self) -> P:
        settings = get_settings()
        with self._lock:
            if self._publisher is None or self._publisher.settings is not settings:
                self._publisher = self._factory(settings)
            return self._publisher
