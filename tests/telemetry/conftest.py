"""OpenTelemetry's SDK with in-memory exporters, installed once for the process.

OpenTelemetry allows one global tracer and meter provider per process, so they are set
on first use and each test starts with the spans cleared and reads the metrics as deltas.
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

from ..cli.test_worker import names  # noqa: F401 - the worker tests' queue names, a fixture

_spans = InMemorySpanExporter()
_metrics = InMemoryMetricReader()
_installed = False


def _install() -> None:
    global _installed
    if not _installed:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_spans))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_metrics]))
        _installed = True


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
