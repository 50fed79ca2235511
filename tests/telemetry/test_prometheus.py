"""Prometheus: what a scraper reads from the worker's metrics port, a Django URL and an ASGI route."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import svclink
import svclink.sync
from svclink.contrib import prometheus

from ..cli.test_worker import Names, probe, publisher, start_worker
from ..conftest import Side, use_server
from ..events_support import eventually
from ..rabbit_node import free_port
from ..server import Reply, TestServer


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and wanted <= ls)


@pytest.mark.parametrize("side", ["sync", "aio"])
def test_the_worker_metrics_port_counts_handled_and_dead_lettered_events(
    side: str, names: Names, tmp_path: Path
) -> None:
    health, metrics = free_port(), free_port()
    worker = start_worker(
        names, side, "--health-port", str(health), "--metrics-port", str(metrics),
        WORKER_MAX_ATTEMPTS="1", WORKER_LOG=str(tmp_path / "log"),
    )  # fmt: skip
    try:
        eventually(lambda: probe(health, "/readyz")[0] == 200, timeout=30, what="the worker ready")
        pub = publisher()
        for n in range(10):
            pub.publish("work.item", {"n": n}, exchange=names.exchange)
        pub.publish("work.item", {"n": 10, "fail": True}, exchange=names.exchange)
        pub.close()

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
                return str(response.read().decode())

        queue = names.queue
        eventually(
            lambda: value(scrape(), "svclink_events_consumed_total", queue=queue) == 11,
            what="11 events counted",
        )
        text = scrape()
        assert value(text, "svclink_events_consumed_total", queue=queue, outcome="ack") == 10
        assert value(text, "svclink_events_dead_lettered_total", queue=queue, reason="max-attempts") == 1
        assert value(text, "messaging_process_duration_seconds_count", queue=queue) == 11
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert worker.returncode == 0


def test_calls_are_recorded_with_service_method_and_status(side: Side, server: TestServer) -> None:
    registry = CollectorRegistry()
    observer = prometheus.install(registry)
    use_server(server)
    server.route("GET", "/a", Reply(200, {}))
    server.route("GET", "/missing", Reply(404, {}))
    side.call("user", "GET", "/a")
    with pytest.raises(svclink.NotFound):
        side.call("user", "GET", "/missing")
    assert prometheus.install(registry) is observer  # once per registry
    labels = {"service": "user", "method": "GET"}
    ok = registry.get_sample_value(
        "http_client_request_duration_seconds_count", {**labels, "status": "200", "error": ""}
    )
    missing = registry.get_sample_value(
        "http_client_request_duration_seconds_count", {**labels, "status": "404", "error": "NotFound"}
    )
    assert ok is not None and ok >= 1 and missing is not None and missing >= 1


def test_the_asgi_route_and_the_django_url_serve_the_exposition(server: TestServer) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    app = Starlette()
    app.mount("/metrics", prometheus.asgi_app())
    svclink.configure(service_connections=["user"], service_hosts={"user": server.url})
    server.route("GET", "/a", Reply(200, {}))
    svclink.sync.get_service("user").http_dispatch("GET", "/a")
    with TestClient(app) as client:
        text = client.get("/metrics/").text
    assert value(text, "http_client_request_duration_seconds_count", service="user", status="200") >= 1

    body, content_type = prometheus.exposition("text/plain")
    assert content_type.startswith("text/plain")
    assert value(body.decode(), "http_client_request_duration_seconds_count", service="user") >= 1
