"""OpenTelemetry's SDK with in-memory exporters, for the tests that ask for ``telemetry``.

OpenTelemetry sets its global providers once per process. The meter provider is set on
first use and kept (the tests read metrics as deltas); the tracer provider is installed
for each such test and taken away after it, the way OpenTelemetry's own test utilities
reset it, so that the tests after them run without an SDK, as an application without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from ..cli.test_worker import names  # noqa: F401 - the worker tests' queue names, a fixture

_spans = InMemorySpanExporter()
_metrics = InMemoryMetricReader()
_installed = False


_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(_spans))


def _reset_tracing() -> None:
    """No tracer provider, as in a new process (what opentelemetry-test-utils does)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()


def _install() -> None:
    global _installed
    if not _installed:
        metrics.set_meter_provider(MeterProvider(metric_readers=[_metrics]))
        _installed = True
    if trace.get_tracer_provider() is not _tracer_provider:
        _reset_tracing()
        trace.set_tracer_provider(_tracer_provider)


class Telemetry:
    """What the SDK recorded: finished spans, and metric points by instrument name."""

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in _spans.get_finished_spans() if name is None or s.name == name]

    def points(self, instrument: str) -> list[Any]:
        data = _metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == instrument:
                        found.extend(metric.data.data_points)
        return found

    def count(self, instrument: str, **attributes: Any) -> int:
        """Recordings of a histogram (its count) or the sum of a counter, with these attributes."""
        total = 0
        for point in self.points(instrument):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += int(getattr(point, "count", None) or getattr(point, "value", 0))
        return total


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    _install()
    _spans.clear()
    yield Telemetry()
    _spans.clear()
    _reset_tracing()
