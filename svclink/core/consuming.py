"""What a consumer declares, which handler gets an event, and what becomes of each message.

A driver reports what happened to a message (it could not be decoded; no handler wanted
it; the handler returned; the handler raised) and :func:`settle` answers with one of three
decisions: :class:`Ack`, :class:`Retry` (copy it to a delay queue that dead-letters back
to the work queue after a TTL) or :class:`DeadLetter` (copy it to ``<queue>.dead`` with the
error in its headers). Nothing here touches a socket or a clock, so every path is
unit-tested without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import attrs

from .context import Incoming
from .errors import InvalidEvent
from .events import Delivery, Event, OutgoingMessage, decode, incoming_context
from .logs import configured_secrets
from .redact import redact
from .settings import Settings
from .topics import check_name, check_pattern, is_pattern, matches

log = logging.getLogger("svclink.events")

ATTEMPT_HEADER = "x-svclink-attempt"
ERROR_HEADER = "x-svclink-error"
ERROR_TYPE_HEADER = "x-svclink-error-type"
DEAD_REASON_HEADER = "x-svclink-dead-reason"
ORIGINAL_EXCHANGE_HEADER = "x-svclink-original-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-svclink-original-routing-key"
QUEUE_HEADER = "x-svclink-queue"

#: headers the broker manages when dead-lettering; never copied onto a republished message
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
_MAX_ERROR = 1000
_SUFFIX_RESERVE = len(".retry.") + 10
QUEUE_TYPES = ("classic", "quorum")

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_DELAYS = (1.0, 10.0, 60.0, 300.0)


def _sequence(what: str, value: object) -> tuple[Any, ...]:
    """``value`` as a tuple, refusing one string or a non-iterable (which ``tuple()`` would
    split into characters, or fail on with a TypeError)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidEvent(f"{what} must be a list, not one {type(value).__name__}")
    return tuple(value)


def _delays(value: Iterable[float]) -> tuple[float, ...]:
    delays = _sequence("retry_delays (numbers of seconds)", value)
    for d in delays:
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.001 <= d <= 86400 * 7:
            raise InvalidEvent("retry_delays must be numbers of seconds between 0.001 and 604800")
    return tuple(float(d) for d in delays)


def _arguments(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def binding_patterns(value: Iterable[str]) -> tuple[str, ...]:
    """``bindings`` as a tuple; each pattern is checked by :class:`ConsumerConfig`."""
    return _sequence("bindings (routing key patterns)", value)


def _check_queue(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    check_name("queue", value, reserve=_SUFFIX_RESERVE)


def _check_exchange(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    check_name("exchange", value)


@attrs.frozen
class QueueSpec:
    """A queue to declare, with its ``x-`` arguments: durable, or exclusive to the declaring connection."""

    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict, converter=_arguments)
    #: not durable, and deleted by the broker when the connection that declared it closes
    exclusive: bool = False


@attrs.frozen(kw_only=True)
class ConsumerConfig:
    """A consumer's queue, bindings and retry policy, validated once."""

    queue: str = attrs.field(validator=_check_queue)
    exchange: str = attrs.field(validator=_check_exchange)
    bindings: tuple[str, ...] = attrs.field(converter=binding_patterns)
    retry_delays: tuple[float, ...] = attrs.field(default=DEFAULT_RETRY_DELAYS, converter=_delays)
    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS)
    prefetch: int = attrs.field(default=10)
    queue_type: str | None = attrs.field(default=None)
    #: the queues belong to the consumer's connection and go away with it (see :class:`QueueSpec`)
    exclusive: bool = attrs.field(default=False)

    @bindings.validator
    def _check_bindings(self, _attribute: object, value: tuple[str, ...]) -> None:
        if not value:
            raise InvalidEvent(
                "a consumer needs at least one binding pattern (or a handler to derive it from)"
            )
        for pattern in value:
            check_pattern(pattern)

    @max_attempts.validator
    def _check_attempts(self, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise InvalidEvent("max_attempts must be a whole number from 1 to 1000")
        if value > 1 and not self.retry_delays:
            raise InvalidEvent(
                "retry_delays must not be empty when max_attempts > 1 (retries would loop hot)"
            )

    @prefetch.validator
    def _check_prefetch(self, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise InvalidEvent("prefetch must be a whole number from 1 to 65535")

    @queue_type.validator
    def _check_queue_type(self, _attribute: object, value: str | None) -> None:
        if value is not None and value not in QUEUE_TYPES:
            raise InvalidEvent(f"queue_type must be one of {', '.join(QUEUE_TYPES)} or None")

    @exclusive.validator
    def _check_exclusive(self, _attribute: object, value: bool) -> None:
        if value and self.queue_type == "quorum":
            raise InvalidEvent("quorum queues cannot be exclusive: use queue_type=None with exclusive=True")

    def delay(self, attempt: int) -> float:
        """How long to wait after failed ``attempt`` (1-based); the last delay repeats."""
        return self.retry_delays[min(attempt, len(self.retry_delays)) - 1]

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    def retry_queue(self, delay: float) -> str:
        return f"{self.queue}.retry.{delay_ms(delay)}"


def delay_ms(delay: float) -> int:
    return max(1, round(delay * 1000))


@attrs.frozen
class Topology:
    """Everything a consumer declares, in order: exchange, work queue + bindings, delay queues, dead queue."""

    exchange: str
    queue: QueueSpec
    bindings: tuple[str, ...]
    retry_queues: tuple[QueueSpec, ...]
    dead_queue: QueueSpec


def topology(config: ConsumerConfig) -> Topology:
    """The queues behind ``config``: one delay queue per distinct delay that can be used.

    A delay queue has no consumer: its per-queue TTL expires each message, in order, and
    the broker dead-letters it through the default exchange back to the work queue.
    """
    base: dict[str, Any] = {"x-queue-type": config.queue_type} if config.queue_type else {}
    used = sorted({delay_ms(config.delay(n)) for n in range(1, config.max_attempts)})
    exclusive = config.exclusive
    retry = tuple(
        QueueSpec(
            f"{config.queue}.retry.{ms}",
            {
                **base,
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": config.queue,
            },
            exclusive,
        )
        for ms in used
    )
    return Topology(
        exchange=config.exchange,
        queue=QueueSpec(config.queue, base, exclusive),
        bindings=config.bindings,
        retry_queues=retry,
        dead_queue=QueueSpec(config.dead_queue, base, exclusive),
    )


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

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns or self._default is not None)


@attrs.frozen
class Ack:
    """Acknowledge: the message is done with (``handled`` is False when no handler wanted it)."""

    handled: bool = True


@attrs.frozen
class Retry:
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


Decision = Ack | Retry | DeadLetter


@attrs.frozen
class Handle(Generic[H]):
    """Run ``handler`` with ``event`` (its context bound), then call :func:`settle` with the outcome."""

    event: Event
    handler: H
    #: how the message's context was read (for the driver to log what was not trusted)
    incoming: Incoming


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
) -> Handle[H] | Decision:
    """The first step for a message: run a handler, or settle at once.

    An undecodable message, and in strict mode (``require_signed_context``) one whose
    signed context does not verify, is dead-lettered; one no handler wants is acked.
    ``now`` and ``wall`` are the monotonic and epoch clocks, for the signed context.
    """
    attempt = attempt_of(delivery)
    try:
        event = decode(delivery.body, attempt=attempt)
    except InvalidEvent as exc:
        return dead_letter(delivery, config, "undecodable", describe_error(exc), attempt)
    read = incoming_context(delivery, event, settings, now=now, wall=wall)
    if read.rejected:
        why = f"caller context not verified: {read.caller.reason}"
        return dead_letter(delivery, config, "untrusted", why, attempt)
    handler = table.find(event.event_type)
    if handler is None:
        return Ack(handled=False)
    return Handle(attrs.evolve(event, context=read.context), handler, read)


def settle(delivery: Delivery, config: ConsumerConfig, error: BaseException | None) -> Decision:
    """What to do once the handler has run: ack on success, else retry or dead-letter by attempt."""
    if error is None:
        return Ack()
    attempt = attempt_of(delivery)
    text = describe_error(error)
    if attempt >= config.max_attempts:
        return dead_letter(delivery, config, "max-attempts", text, attempt)
    delay = config.delay(attempt)
    headers = _carried_headers(delivery)
    headers.update({ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: text, ERROR_TYPE_HEADER: type(error).__name__})
    return Retry(
        queue=config.retry_queue(delay),
        delay=delay,
        headers=MappingProxyType(headers),
        attempt=attempt + 1,
        error=text,
    )


def dead_letter(
    delivery: Delivery, config: ConsumerConfig, reason: str, error: str, attempt: int
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
    return DeadLetter(queue=config.dead_queue, headers=MappingProxyType(headers), reason=reason, error=error)


def republish(delivery: Delivery, decision: Retry | DeadLetter) -> OutgoingMessage:
    """The copy of ``delivery`` that carries out ``decision``: same body and properties, new headers,
    sent through the default exchange straight to the target queue."""
    return OutgoingMessage(
        exchange="",
        routing_key=decision.queue,
        body=delivery.body,
        properties=attrs.evolve(delivery.properties, headers=decision.headers),
        mandatory=True,
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


def log_decision(
    config: ConsumerConfig,
    delivery: Delivery,
    decision: Decision,
    event: Event | None = None,
    error: BaseException | None = None,
) -> None:
    """One log line per message that did not simply succeed, the same on both sides."""
    what = event.event_id if event else delivery.properties.message_id
    kind = event.event_type if event else delivery.properties.type
    if isinstance(decision, Ack):
        if not decision.handled:
            log.warning("consumer %s: no handler for event type %r (%s); acked", config.queue, kind, what)
    elif isinstance(decision, Retry):
        log.warning(
            "consumer %s: handler failed for %s %s (attempt %d); retrying in %.3gs",
            config.queue, kind, what, decision.attempt - 1, decision.delay, exc_info=error,
        )  # fmt: skip
    elif isinstance(decision, DeadLetter):
        log.error(
            "consumer %s: %s %s dead-lettered to %s (%s): %s",
            config.queue, kind, what, decision.queue, decision.reason, decision.error, exc_info=error,
        )  # fmt: skip
