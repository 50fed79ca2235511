"""Telemetry: every span name, attribute and instrument of svclink, defined once.

What belongs here: the OpenTelemetry semantic conventions svclink follows (CLIENT,
PRODUCER and CONSUMER spans; ``http.client.request.duration``,
``messaging.client.operation.duration``, ``messaging.process.duration``; svclink's own
counters), the spans the drivers open around a call, a publish and a handler, and the
observer that turns core's reports (:mod:`svclink.core.observe`) into span events and
metrics. The drivers only open the span core names; core's call flow reports into it.

Nothing here costs anything without ``opentelemetry-api``: the spans are one shared
no-op context manager and the observer is never installed. With the API but no SDK,
OpenTelemetry's own no-op tracer and meter answer.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from .context import trace
from .events.envelope import Event
from .events.handling import Ack, DeadLetter, Delay, Disposition, attempt_of, settle
from .events.message import Delivery
from .events.topology import ConsumerConfig
from .logs import HANDLING
from .observe import AttemptInfo, CallInfo, ConsumeInfo, Observer, PublishInfo, add_observer, notify, watching
from .policy.breaker import State
from .settings import Settings

INSTRUMENTATION = "svclink"
MESSAGING_SYSTEM = "rabbitmq"

#: (name, unit, description) of every instrument svclink records
HTTP_DURATION = ("http.client.request.duration", "s", "Duration of HTTP client calls, retries included")
PUBLISH_DURATION = ("messaging.client.operation.duration", "s", "Duration of publishes, until confirmed")
PROCESS_DURATION = ("messaging.process.duration", "s", "Duration of event handlers")
RETRIES = ("svclink.http.retries", "{retry}", "HTTP attempts that were retried")
BREAKER_OPEN = ("svclink.breaker.open", "{breaker}", "Circuit breakers open (1) or not (0), per service")
BUDGET_EXHAUSTED = ("svclink.retry_budget.exhausted", "{retry}", "Retries refused by the retry budget")
DEAD_LETTERED = ("svclink.events.dead_lettered", "{event}", "Events moved to a dead-letter queue")
INSTRUMENTS = (HTTP_DURATION, PUBLISH_DURATION, PROCESS_DURATION, RETRIES, BREAKER_OPEN,
               BUDGET_EXHAUSTED, DEAD_LETTERED)  # fmt: skip


_UNIT_SUFFIX = {"s": "seconds"}


def prometheus_name(name: str, unit: str) -> str:
    """The Prometheus name of an instrument: dots as underscores, the unit as a suffix
    (``http.client.request.duration``, ``s`` -> ``http_client_request_duration_seconds``)."""
    base = name.replace(".", "_")
    suffix = _UNIT_SUFFIX.get(unit)
    return f"{base}_{suffix}" if suffix else base


def client_span(service: str, method: str, endpoint: str, base_url: str) -> tuple[str, dict[str, Any]]:
    """The CLIENT span of a call: its name and starting attributes (HTTP semantic conventions);
    ``url.full`` is added once the call's URL is built."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{method} {endpoint}", {
        "http.request.method": method,
        "server.address": parts.hostname or "",
        "server.port": port,
        "url.template": endpoint,
        "svclink.service": service,
    }


def producer_span(exchange: str, event_type: str) -> tuple[str, dict[str, Any]]:
    """The PRODUCER span of a publish (messaging semantic conventions)."""
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": exchange,
    }
    if event_type:  # a batch has many
        attributes["messaging.rabbitmq.destination.routing_key"] = event_type
    return f"publish {exchange}", attributes


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add ``attributes`` to the current span (what is known only once a span is open)."""
    otel = trace.api()
    if otel is not None:
        otel[2].get_current_span().set_attributes(dict(attributes))


def consumer_span(
    queue: str, delivery: Delivery, event_type: str, event_id: str, attempt: int
) -> tuple[str, dict[str, Any]]:
    """The CONSUMER span of one handled message."""
    return f"process {queue}", {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.name": delivery.exchange,
        "messaging.rabbitmq.destination.routing_key": delivery.routing_key,
        "messaging.consumer.group.name": queue,
        "messaging.message.id": event_id,
        "svclink.event_type": event_type,
        "svclink.attempt": attempt,
    }


#: what :func:`span` returns without OpenTelemetry (reusable: it holds nothing)
NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def tracing() -> bool:
    """Are spans recorded? Only once an OpenTelemetry SDK's tracer provider is installed:
    with the API alone every span would be a no-op, so none is made (nor its attributes).
    The first time an SDK's tracer or meter provider is seen, the :class:`Recorder` starts."""
    otel = trace.api()
    if otel is None:
        return False
    recording = trace.provider_installed(otel[2], "_TRACER_PROVIDER", otel[2].get_tracer_provider)
    if not _installed and (recording or _metering()):
        _install()
    return recording


#: OpenTelemetry's metrics API module holding its global meter provider, once looked up
_meters: ModuleType | None = None


def _metering() -> bool:
    """Is an SDK's meter provider installed?"""
    global _meters
    if _meters is None:
        try:
            _meters = importlib.import_module("opentelemetry.metrics._internal")
        except ImportError:  # a later API without that module: its public getter is asked
            _meters = importlib.import_module("opentelemetry.metrics")
    return trace.provider_installed(_meters, "_METER_PROVIDER", _meters.get_meter_provider)


def span(kind: str, name: str, attributes: Mapping[str, Any], parent: Mapping[str, str] | None = None) -> Any:
    """A context manager that makes ``name`` the current span of ``kind`` (CLIENT, PRODUCER,
    CONSUMER) while it is open, child of ``parent`` (trace headers) if given; a no-op
    without OpenTelemetry. Core's reports while it is open land on it (see :class:`Recorder`)."""
    otel = trace.api()
    if otel is None:
        return NO_SPAN
    tracer = _tracer()
    _context, propagate, otel_trace = otel
    ctx = propagate.extract(dict(parent)) if parent else None
    return tracer.start_as_current_span(
        name, context=ctx, kind=getattr(otel_trace.SpanKind, kind), attributes=dict(attributes)
    )


def report_consume(
    settings: Settings,
    config: ConsumerConfig,
    delivery: Delivery,
    disposition: Disposition,
    event: Event | None = None,
    error: BaseException | None = None,
    duration: float | None = None,
) -> None:
    """Tell the observers what became of a message (``on_consume``), if anyone listens."""
    if not watching(settings.observers):
        return
    outcome, reason = _outcome(disposition)
    info = ConsumeInfo(
        queue=config.queue,
        event_type=event.event_type if event is not None else None,
        event_id=event.event_id if event is not None else None,
        attempt=event.attempt if event is not None else attempt_of(delivery),
        outcome=outcome,
        reason=reason,
        error=type(error).__name__ if error is not None else None,
        duration=duration,
    )
    notify(settings.observers, "on_consume", info)


class HandlerSpan:
    """The CONSUMER span of one handler run; the driver reports the handler's exception with
    :meth:`failed`, and the span closes with the outcome core's :func:`settle` gives it."""

    def __init__(self, event: Event, opened: Any, config: ConsumerConfig, delivery: Delivery) -> None:
        self._event, self._opened, self._config, self._delivery = event, opened, config, delivery
        self._error: BaseException | None = None
        self._span: Any = None
        self._token: Any = None

    def failed(self, error: BaseException) -> None:
        self._error = error

    def __enter__(self) -> HandlerSpan:
        self._token = HANDLING.set((self._event.event_id, self._event.event_type))
        self._span = self._opened.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        HANDLING.reset(self._token)
        outcome = settle(self._delivery, self._config, self._error)
        self._span.set_attribute("svclink.outcome", _outcome(outcome)[0])
        if isinstance(outcome, DeadLetter):
            self._span.set_attribute("svclink.dead_letter_reason", outcome.reason)
        if self._error is not None:
            self._span.record_exception(self._error)
            _set_error(self._span, type(self._error).__name__)
        return self._opened.__exit__(*exc_info)


class NoHandlerSpan:
    """:class:`HandlerSpan` without OpenTelemetry: only the event in the log records."""

    def __init__(self, event: Event) -> None:
        self._event = event
        self._token: Any = None

    def failed(self, error: BaseException) -> None:
        pass

    def __enter__(self) -> NoHandlerSpan:
        self._token = HANDLING.set((self._event.event_id, self._event.event_type))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        HANDLING.reset(self._token)


def _outcome(disposition: Disposition) -> tuple[str, str | None]:
    if isinstance(disposition, Ack):
        return "ack", None
    if isinstance(disposition, Delay):
        return "retry", None
    return "dead-letter", disposition.reason


class Recorder(Observer):
    """Core's reports as span events and attributes on the current span, and as metrics."""

    def __init__(self) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter(INSTRUMENTATION)
        self._http = meter.create_histogram(*HTTP_DURATION)
        self._publish = meter.create_histogram(*PUBLISH_DURATION)
        self._process = meter.create_histogram(*PROCESS_DURATION)
        self._retries = meter.create_counter(*RETRIES)
        self._breaker = meter.create_up_down_counter(*BREAKER_OPEN)
        self._budget = meter.create_counter(*BUDGET_EXHAUSTED)
        self._dead = meter.create_counter(*DEAD_LETTERED)

    @staticmethod
    def _current() -> Any:
        otel = trace.api()
        return None if otel is None else otel[2].get_current_span()

    def on_attempt(self, info: AttemptInfo) -> None:
        if info.retry:
            self._retries.add(1, {"svclink.service": info.service, "http.request.method": info.method})
            current = self._current()
            if current is not None:
                current.add_event("retry", _attempt_event(info))

    def on_retry_budget(self, service: str) -> None:
        self._budget.add(1, {"svclink.service": service})
        current = self._current()
        if current is not None:
            current.add_event("retry_budget_exhausted", {"svclink.service": service})

    def on_call(self, info: CallInfo) -> None:
        attributes: dict[str, Any] = {"http.request.method": info.method, "svclink.service": info.service}
        if info.status is not None:
            attributes["http.response.status_code"] = info.status
        if info.error is not None:
            attributes["error.type"] = info.error
        self._http.record(info.duration, attributes)
        current = self._current()
        if current is not None:
            current.set_attributes({**attributes, "svclink.attempts": info.attempts})
            if info.error == "CircuitOpen":
                current.add_event("circuit_open", {"svclink.service": info.service})
            if info.error is not None:
                _set_error(current, info.error)

    def on_breaker(self, service: str, old: State, new: State) -> None:
        was, now = old is State.OPEN, new is State.OPEN
        if was != now:
            self._breaker.add(1 if now else -1, {"svclink.service": service})

    def on_publish(self, info: PublishInfo) -> None:
        attributes = {"messaging.system": MESSAGING_SYSTEM, "messaging.destination.name": info.exchange}
        if info.error is not None:
            attributes["error.type"] = info.error
        self._publish.record(info.latency, attributes)
        current = self._current()
        if current is not None and info.error is not None:
            _set_error(current, info.error)

    def on_consume(self, info: ConsumeInfo) -> None:
        attributes = {"messaging.system": MESSAGING_SYSTEM, "messaging.consumer.group.name": info.queue,
                      "svclink.outcome": info.outcome}  # fmt: skip
        if info.error is not None:
            attributes["error.type"] = info.error
        if info.duration is not None:
            self._process.record(info.duration, attributes)
        if info.outcome == "dead-letter":
            self._dead.add(
                1, {"messaging.consumer.group.name": info.queue, "svclink.reason": info.reason or ""}
            )
        current = self._current()
        if current is not None:
            current.set_attribute("svclink.outcome", info.outcome)
            if info.reason is not None:
                current.set_attribute("svclink.dead_letter_reason", info.reason)
            if info.error is not None:
                _set_error(current, info.error)


def _attempt_event(info: AttemptInfo) -> dict[str, Any]:
    event: dict[str, Any] = {"svclink.attempt": info.attempt, "svclink.wait": info.wait}
    if info.status is not None:
        event["http.response.status_code"] = info.status
    if info.failure is not None:
        event["error.type"] = info.failure
    return event


def _set_error(current: Any, error: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("error.type", error)
    current.set_status(Status(StatusCode.ERROR, error))


_installed = False
_lock = threading.Lock()
_tracer_of: dict[int, tuple[Any, Any]] = {}


def _tracer() -> Any:
    """svclink's tracer from the installed provider, got once per provider."""
    api = trace.api()
    assert api is not None
    provider = api[2].get_tracer_provider()
    cached = _tracer_of.get(id(provider))
    if cached is None or cached[0] is not provider:
        cached = _tracer_of[id(provider)] = (provider, provider.get_tracer(INSTRUMENTATION))
    return cached[1]


def _install() -> None:
    """Add the :class:`Recorder` to every process-wide observer list, once."""
    global _installed
    if _installed:
        return
    with _lock:
        if not _installed:
            add_observer(Recorder())
            _installed = True
