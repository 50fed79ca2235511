"""Which handler gets an event, and what becomes of each message.

A driver reports what happened to a message (it could not be decoded; no handler wanted
it; the handler returned; the handler raised) and :func:`settle` answers with one of three
dispositions: :class:`Ack`, :class:`Delay` (copy it to a delay queue that dead-letters back
to the work queue after a TTL) or :class:`DeadLetter` (copy it to ``<queue>.dead`` with the
error in its headers). Nothing here touches a socket or a clock, so every path is
unit-tested without a broker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import attrs

from ..context.incoming import Incoming
from ..errors import InvalidEvent
from ..logs import configured_secrets, logger
from ..redact import redact
from ..settings import Settings
from .envelope import Event, with_context
from .formats import (
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    carried_id,
    original_routing_key,
    read_event,
)
from .message import Delivery, OutgoingMessage, incoming_context
from .topics import check_pattern, is_pattern, matches
from .topology import ConsumerConfig

log = logger("svclink.events")


ATTEMPT_HEADER = "x-svclink-attempt"


ERROR_HEADER = "x-svclink-error"


ERROR_TYPE_HEADER = "x-svclink-error-type"


DEAD_REASON_HEADER = "x-svclink-dead-reason"


#: when the message was dead-lettered, in seconds since the epoch
DEAD_AT_HEADER = "x-svclink-dead-lettered-at"


QUEUE_HEADER = "x-svclink-queue"


#: headers the broker manages when dead-lettering; never copied onto a republished message
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


_MAX_ERROR = 1000


H = TypeVar("H")


class HandlerTable(Generic[H]):
    """Handlers by event type: exact types first, then patterns in registration order, then the default.

    A pattern that matches everything (``#``) registered with :meth:`add` is the default.
    """

    def __init__(self) -> None:
        self._exact: dict[str, H] = {}
        self._patterns: list[tuple[str, H]] = []
        self._default: H | None = None

    def add(self, pattern: str, handler: H) -> None:
        check_pattern(pattern)
        if not pattern:
            raise InvalidEvent("a handler pattern must not be empty (no event type is)")
        if pattern == "#":
            self.set_default(handler)
        elif is_pattern(pattern):
            if any(p == pattern for p, _ in self._patterns):
                raise InvalidEvent(f"a handler for {pattern!r} is already registered")
            self._patterns.append((pattern, handler))
        else:
            if pattern in self._exact:
                raise InvalidEvent(f"a handler for {pattern!r} is already registered")
            self._exact[pattern] = handler

    def set_default(self, handler: H) -> None:
        if self._default is not None:
            raise InvalidEvent("a default handler is already registered")
        self._default = handler

    def find(self, event_type: str) -> H | None:
        handler = self._exact.get(event_type)
        if handler is not None:
            return handler
        for pattern, candidate in self._patterns:
            if matches(pattern, event_type):
                return candidate
        return self._default

    def patterns(self) -> tuple[str, ...]:
        """The binding patterns these handlers need (``#`` alone when there is a default)."""
        if self._default is not None:
            return ("#",)
        return (*self._exact, *(p for p, _ in self._patterns))

    def wrap(self, wrapper: Callable[[H], H]) -> None:
        """Replace every handler registered so far with ``wrapper(handler)``."""
        self._exact = {t: wrapper(h) for t, h in self._exact.items()}
        self._patterns = [(p, wrapper(h)) for p, h in self._patterns]
        if self._default is not None:
            self._default = wrapper(self._default)

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns or self._default is not None)


@attrs.frozen
class Ack:
    """Acknowledge: the message is done with (``handled`` is False when no handler wanted it)."""

    handled: bool = True
    #: the type no handler wanted (for the log line)
    event_type: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Delay:
    """Copy the message to delay queue ``queue`` (then ack it); it comes back after ``delay`` seconds."""

    queue: str
    delay: float
    headers: Mapping[str, Any]
    attempt: int
    error: str


@attrs.frozen
class DeadLetter:
    """Copy the message to ``queue`` (``<queue>.dead``) with the reason in its headers, then ack it."""

    queue: str
    headers: Mapping[str, Any]
    reason: str
    error: str


Disposition = Ack | Delay | DeadLetter


@attrs.frozen
class Handle(Generic[H]):
    """Run ``handler`` with ``event`` (its context bound), then call :func:`settle` with the outcome."""

    event: Event
    handler: H
    #: how the message's context was read (for the driver to log what was not trusted)
    incoming: Incoming
    #: when the message was received (monotonic clock), for the handler's duration
    received: float = 0.0


def attempt_of(delivery: Delivery) -> int:
    """The delivery attempt carried in svclink's header (1 when absent or garbled)."""
    value = delivery.properties.headers.get(ATTEMPT_HEADER)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return 1
    return value


def describe_error(error: BaseException) -> str:
    """``Type: message``, bounded, for a header a person will read in the dead-letter queue."""
    text = redact(f"{type(error).__name__}: {error}", configured_secrets())  # it goes into the broker
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


def _carried_headers(delivery: Delivery) -> dict[str, Any]:
    headers = {k: v for k, v in delivery.properties.headers.items() if not k.startswith(_BROKER_HEADERS)}
    headers.setdefault(ORIGINAL_EXCHANGE_HEADER, delivery.exchange)
    headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, delivery.routing_key)
    return headers


def receive(
    delivery: Delivery,
    config: ConsumerConfig,
    table: HandlerTable[H],
    settings: Settings,
    *,
    now: float,
    wall: float,
) -> Handle[H] | Disposition:
    """The first step for a message: run a handler, or settle at once.

    A message that is neither an envelope nor (unless ``config.strict``) a JSON object, and
    in strict mode (``require_signed_context``) one whose
    signed context does not verify, is dead-lettered; one no handler wants is acked.
    ``now`` and ``wall`` are the monotonic and epoch clocks, for the signed context.
    """
    attempt = attempt_of(delivery)
    try:
        event = read_event(delivery, strict=config.strict, attempt=attempt, wall=wall)
    except InvalidEvent as exc:
        return dead_letter(delivery, config, "undecodable", describe_error(exc), attempt, wall=wall)
    read = incoming_context(delivery, event, settings, now=now, wall=wall)
    if read.rejected:
        why = f"caller context not verified: {read.caller.reason}"
        return dead_letter(delivery, config, "untrusted", why, attempt, wall=wall)
    handler = table.find(event.event_type)
    if handler is None:
        return Ack(handled=False, event_type=event.event_type)
    return Handle(with_context(event, read.context), handler, read, now)


def settle(
    delivery: Delivery, config: ConsumerConfig, error: BaseException | None, *, wall: float | None = None
) -> Disposition:
    """What to do once the handler has run: ack on success, else retry or dead-letter by attempt.

    ``wall`` (the epoch clock) is recorded in a dead letter's headers as when it died."""
    if error is None:
        return Ack()
    attempt = attempt_of(delivery)
    text = describe_error(error)
    if attempt >= config.max_attempts:
        return dead_letter(delivery, config, "max-attempts", text, attempt, wall=wall)
    delay = config.delay(attempt)
    headers = _carried_headers(delivery)
    headers.update({ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: text, ERROR_TYPE_HEADER: type(error).__name__})
    return Delay(
        queue=config.retry_queue(delay),
        delay=delay,
        headers=MappingProxyType(headers),
        attempt=attempt + 1,
        error=text,
    )


def dead_letter(
    delivery: Delivery,
    config: ConsumerConfig,
    reason: str,
    error: str,
    attempt: int,
    *,
    wall: float | None = None,
) -> DeadLetter:
    headers = _carried_headers(delivery)
    headers.update(
        {
            DEAD_REASON_HEADER: reason,
            ERROR_HEADER: error,
            ATTEMPT_HEADER: attempt,
            QUEUE_HEADER: config.queue,
        }
    )
    if wall is not None:
        headers[DEAD_AT_HEADER] = int(wall)
    return DeadLetter(queue=config.dead_queue, headers=MappingProxyType(headers), reason=reason, error=error)


def republish(delivery: Delivery, disposition: Delay | DeadLetter) -> OutgoingMessage:
    """The copy of ``delivery`` that carries out ``disposition``: same body and properties, new headers,
    sent through the default exchange straight to the target queue. A message with no
    ``message_id`` (a foreign event's) gets its event's id as one, which it keeps from then on."""
    properties = attrs.evolve(delivery.properties, headers=disposition.headers)
    if properties.message_id is None:
        properties = attrs.evolve(properties, message_id=carried_id(delivery))
    return OutgoingMessage(
        exchange="", routing_key=disposition.queue, body=delivery.body, properties=properties, mandatory=True
    )


def reconnect_delay(failures: int) -> float:
    """Seconds to wait before reconnect number ``failures`` (1-based): 0.1 s doubling to 5 s."""
    return float(min(5.0, 0.1 * 2 ** max(0, failures - 1)))


@attrs.define
class Backoff:
    """A consumer's reconnect backoff: it grows with each failure in a row, and starts over
    once a session is consuming again (so the next loss is retried quickly)."""

    failures: int = 0

    def failed(self) -> float:
        """A connection attempt failed or a session was lost: the seconds to wait before the next."""
        self.failures += 1
        return reconnect_delay(self.failures)

    def connected(self) -> None:
        """A session is declared and consuming."""
        self.failures = 0


def describe_message(delivery: Delivery, event: Event | None) -> str:
    """A message as a log line names it: the event's type and id, else (not decoded) its
    routing key and message id."""
    if event is not None:
        return f"{event.event_type} {event.event_id}"
    key = original_routing_key(delivery)
    message_id = delivery.properties.message_id
    return f"message with routing key {key!r} and " + (f"id {message_id}" if message_id else "no id")


def quiet(disposition: Disposition) -> bool:
    """Did the message simply succeed? Then it gets no log line (see :func:`log_disposition`):
    the common case, so a consumer skips building the line's context for it too."""
    return isinstance(disposition, Ack) and disposition.handled


def log_disposition(
    config: ConsumerConfig,
    delivery: Delivery,
    disposition: Disposition,
    event: Event | None = None,
    error: BaseException | None = None,
) -> None:
    """One log line per message that did not simply succeed, the same on both sides."""
    if quiet(disposition):
        return
    what = describe_message(delivery, event)
    if isinstance(disposition, Ack):
        log.warning(
            "consumer %s: no handler for event type %r (%s); acked",
            config.queue, disposition.event_type, what,
        )  # fmt: skip
    elif isinstance(disposition, Delay):
        log.warning(
            "consumer %s: handler failed for %s (attempt %d); retrying in %.3gs",
            config.queue, what, disposition.attempt - 1, disposition.delay, exc_info=error,
        )  # fmt: skip
    elif isinstance(disposition, DeadLetter):
        log.error(
            "consumer %s: %s dead-lettered to %s (%s): %s",
            config.queue, what, disposition.queue, disposition.reason, disposition.error, exc_info=error,
        )  # fmt: skip
