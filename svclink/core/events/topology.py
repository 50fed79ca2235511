"""What a consumer declares: its checked configuration, its queues, and the order to declare them.

:class:`ConsumerConfig` is a consumer's arguments, validated before any I/O;
:func:`topology` the queues behind it (the work queue, one delay queue per delay in use,
the dead-letter queue); :func:`declarations` the steps, in the one order both sides take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ..errors import InvalidEvent
from .topics import check_name, check_pattern

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
    #: svclink envelopes only: any other body is dead-lettered (else any JSON object is an event)
    strict: bool = attrs.field(default=False)

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

    @strict.validator
    def _check_strict(self, _attribute: object, value: bool) -> None:
        if not isinstance(value, bool):
            raise InvalidEvent(f"strict must be True or False, not {type(value).__name__}")

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
class ExchangeSpec:
    """An exchange to declare: durable, of type topic (every exchange svclink declares is)."""

    name: str


@attrs.frozen
class Binding:
    """A binding to declare: ``queue`` gets the messages of ``exchange`` whose routing key
    matches ``pattern``."""

    queue: str
    exchange: str
    pattern: str


#: one step of declaring a consumer's topology
Declaration = ExchangeSpec | QueueSpec | Binding


@attrs.frozen
class Topology:
    """Everything a consumer declares; :func:`declarations` gives the order."""

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


def declarations(topo: Topology) -> tuple[Declaration, ...]:
    """What a consumer declares, in the order every driver declares it.

    The exchange, then the work queue, its delay queues and its dead-letter queue, then the
    bindings last: a queue starts to receive events only once everything it moves messages
    to exists, and a declaration the broker refuses leaves the same queues behind on every
    side (the ones before it).
    """
    queues: tuple[Declaration, ...] = (topo.queue, *topo.retry_queues, topo.dead_queue)
    bindings = tuple(Binding(topo.queue.name, topo.exchange, pattern) for pattern in topo.bindings)
    return (ExchangeSpec(topo.exchange), *queues, *bindings)
