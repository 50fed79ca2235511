"""Prometheus metrics: svclink's instruments (:mod:`svclink.core.telemetry`) in ``prometheus_client``.

``install()`` starts recording into a registry (the default one unless given) from every
service and consumer of the process; expose it the way your process already serves HTTP:

- ``svclink worker --metrics-port 9100`` (or :func:`serve`) runs prometheus_client's own server;
- Django: ``path("", include("svclink.contrib.django.urls"))`` serves ``/metrics``;
- ASGI: ``app.mount("/metrics", svclink.contrib.prometheus.asgi_app())``.

Each exposition calls ``install()`` itself, so nothing is recorded (and nothing costs
anything) in a process that exposes no metrics. Needs ``svclink[prometheus]``.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    import prometheus_client
except ImportError as exc:  # pragma: no cover - exercised by the one-extra environments
    raise ImportError(
        "svclink.contrib.prometheus needs prometheus_client: pip install 'svclink[prometheus]'"
    ) from exc

from ..core.observe import AttemptInfo, CallInfo, ConsumeInfo, Observer, PublishInfo, add_observer
from ..core.policy.breaker import State
from ..core.telemetry import (
    BREAKER_OPEN,
    BUDGET_EXHAUSTED,
    DEAD_LETTERED,
    HTTP_DURATION,
    PROCESS_DURATION,
    PUBLISH_DURATION,
    RETRIES,
    prometheus_name,
)

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONSUMED = ("svclink.events.consumed", "{event}", "Messages a consumer finished with, by outcome")


class PrometheusObserver(Observer):
    """Records every report of core into Prometheus instruments of ``registry``."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        def histogram(spec: tuple[str, str, str], labels: list[str]) -> prometheus_client.Histogram:
            return prometheus_client.Histogram(
                prometheus_name(spec[0], spec[1]), spec[2], labels, registry=registry, buckets=_BUCKETS
            )

        def counter(spec: tuple[str, str, str], labels: list[str]) -> prometheus_client.Counter:
            return prometheus_client.Counter(
                prometheus_name(spec[0], spec[1]), spec[2], labels, registry=registry
            )

        self.http = histogram(HTTP_DURATION, ["service", "method", "status", "error"])
        self.publish = histogram(PUBLISH_DURATION, ["exchange", "error"])
        self.process = histogram(PROCESS_DURATION, ["queue", "outcome"])
        self.retries = counter(RETRIES, ["service", "method"])
        self.budget = counter(BUDGET_EXHAUSTED, ["service"])
        self.dead = counter(DEAD_LETTERED, ["queue", "reason"])
        self.consumed = counter(CONSUMED, ["queue", "outcome"])
        self.breaker = prometheus_client.Gauge(
            prometheus_name(BREAKER_OPEN[0], BREAKER_OPEN[1]), BREAKER_OPEN[2], ["service"], registry=registry
        )

    def on_attempt(self, info: AttemptInfo) -> None:
        if info.retry:
            self.retries.labels(info.service, info.method).inc()

    def on_call(self, info: CallInfo) -> None:
        status = "" if info.status is None else str(info.status)
        self.http.labels(info.service, info.method, status, info.error or "").observe(info.duration)

    def on_breaker(self, service: str, old: State, new: State) -> None:
        self.breaker.labels(service).set(1 if new is State.OPEN else 0)

    def on_retry_budget(self, service: str) -> None:
        self.budget.labels(service).inc()

    def on_publish(self, info: PublishInfo) -> None:
        self.publish.labels(info.exchange, info.error or "").observe(info.latency)

    def on_consume(self, info: ConsumeInfo) -> None:
        self.consumed.labels(info.queue, info.outcome).inc()
        if info.duration is not None:
            self.process.labels(info.queue, info.outcome).observe(info.duration)
        if info.outcome == "dead-letter":
            self.dead.labels(info.queue, info.reason or "").inc()


_lock = threading.Lock()
#: by registry (held: an id could be reused by a later registry once this one is gone)
_observers: dict[prometheus_client.CollectorRegistry, PrometheusObserver] = {}


def install(registry: prometheus_client.CollectorRegistry | None = None) -> PrometheusObserver:
    """Record svclink's metrics into ``registry`` (prometheus_client's default one if None), once."""
    target = prometheus_client.REGISTRY if registry is None else registry
    with _lock:
        observer = _observers.get(target)
        if observer is None:
            observer = _observers[target] = PrometheusObserver(target)
            add_observer(observer)
        return observer


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Record, and serve ``/metrics`` on ``host:port`` from a thread of prometheus_client's own."""
    install()
    prometheus_client.start_http_server(port, addr=host)


def asgi_app(registry: prometheus_client.CollectorRegistry | None = None) -> Any:
    """An ASGI app that serves the metrics (mount it at ``/metrics``)."""
    install(registry)
    return prometheus_client.make_asgi_app(registry or prometheus_client.REGISTRY)


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The metrics in the format a scraper asked for (``Accept``), and its content type."""
    install()
    encoder, content_type = prometheus_client.exposition.choose_encoder(accept or "")
    return encoder(prometheus_client.REGISTRY), content_type
