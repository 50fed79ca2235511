"""Hooks for metrics: what happened on each attempt, call, breaker change and publish.

Pass observers in ``Settings.observers``; each overrides the methods it cares about.
svclink depends on no metrics library: an adapter for Prometheus or StatsD is a few
lines in the application. :class:`LoggingObserver` is the ready one. An observer that
raises is logged and ignored: metrics never break a call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import attrs

from .logs import logger
from .policy.breaker import State

log = logger("svclink.observe")


@attrs.frozen
class AttemptInfo:
    """One attempt of an HTTP call."""

    service: str
    method: str
    endpoint: str
    attempt: int
    #: the status received, or None when no response arrived
    status: int | None
    #: "connect", "reset" or "timeout" when no response arrived
    failure: str | None
    latency: float
    #: whether another attempt follows, and after how long
    retry: bool
    wait: float


@attrs.frozen
class CallInfo:
    """A whole HTTP call, every attempt and wait included."""

    service: str
    method: str
    endpoint: str
    attempts: int
    status: int | None
    #: the exception class name raised to the caller, if any
    error: str | None
    duration: float


@attrs.frozen
class PublishInfo:
    """One published event (or a batch member)."""

    exchange: str
    event_type: str
    latency: float
    error: str | None


@attrs.frozen
class ConsumeInfo:
    """One message a consumer finished with: handled, sent to retry, or dead-lettered."""

    queue: str
    event_type: str | None
    event_id: str | None
    attempt: int
    #: "ack", "retry" or "dead-letter"
    outcome: str
    #: why it was dead-lettered ("max-attempts", "undecodable", ...), if it was
    reason: str | None
    #: the handler's exception class name, if it raised
    error: str | None
    #: how long the handler ran (None when no handler ran)
    duration: float | None


@attrs.frozen
class UnroutableInfo:
    """An event published under ``unroutable="warn"`` that no queue took."""

    exchange: str
    routing_key: str
    event_type: str
    event_id: str


class Observer:
    """Base class of observers; every hook does nothing until overridden."""

    def on_attempt(self, info: AttemptInfo) -> None:
        """After each attempt of an HTTP call."""

    def on_call(self, info: CallInfo) -> None:
        """After each HTTP call, successful or not."""

    def on_breaker(self, service: str, old: State, new: State) -> None:
        """When a service's circuit breaker changes state."""

    def on_publish(self, info: PublishInfo) -> None:
        """After each publish, confirmed or not."""

    def on_retry_budget(self, service: str) -> None:
        """When a retry is refused because the service's retry budget is spent."""

    def on_consume(self, info: ConsumeInfo) -> None:
        """After a consumer has finished with a message (acked, delayed or dead-lettered)."""

    def on_unroutable(self, info: UnroutableInfo) -> None:
        """When a published event reached no queue and ``unroutable`` is ``"warn"``."""


class LoggingObserver(Observer):
    """Logs attempts and calls at DEBUG, failures at WARNING, breaker changes at WARNING."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    def on_attempt(self, info: AttemptInfo) -> None:
        self.log.debug("attempt %s", info)

    def on_call(self, info: CallInfo) -> None:
        level = logging.WARNING if info.error else logging.DEBUG
        self.log.log(level, "call %s", info)

    def on_breaker(self, service: str, old: State, new: State) -> None:
        self.log.warning("circuit breaker of %s: %s -> %s", service, old.value, new.value)

    def on_publish(self, info: PublishInfo) -> None:
        level = logging.WARNING if info.error else logging.DEBUG
        self.log.log(level, "publish %s", info)


#: observers of the whole process (telemetry), beside each settings' own
_installed: tuple[Observer, ...] = ()


def add_observer(observer: Observer) -> None:
    """Report to ``observer`` from every service and consumer of the process, whatever the settings."""
    global _installed
    _installed = (*_installed, observer)


def watching(observers: tuple[Observer, ...]) -> bool:
    """Is anyone listening? (a report is built only then)."""
    return bool(observers or _installed)


def notify(observers: Iterable[Observer], hook: str, *args: object) -> None:
    """Call ``hook`` on every observer (the settings' and the process's); an observer's
    exception is logged, never raised."""
    for observer in (*observers, *_installed):
        try:
            getattr(observer, hook)(*args)
        except Exception:
            log.exception("observer %r failed in %s", observer, hook)
