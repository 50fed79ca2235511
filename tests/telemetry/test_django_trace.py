"""One trace from a Django request, through the service it calls and the event it publishes, to the
consumer's handler (OpenTelemetry's SDK reads it back)."""

from __future__ import annotations

from typing import Any

from ..django_project import setup

setup()

from django.test import override_settings  # noqa: E402

from svclink.testing import get_broker  # noqa: E402

from ..conftest import Side  # noqa: E402
from ..contrib.test_django import TP, get, svclink_settings  # noqa: E402
from ..events_support import Recorder, Running, eventually  # noqa: E402
from ..server import Reply, TestServer  # noqa: E402
from .conftest import Telemetry  # noqa: E402


def test_a_request_its_call_its_event_and_the_handler_are_one_trace(
    side: Side, server: TestServer, telemetry: Telemetry
) -> None:
    import svclink.sync

    server.route("GET", "/downstream", Reply(200, {"ok": True}))
    trace_id, parent_id = int(TP.split("-")[1], 16), int(TP.split("-")[2], 16)
    with override_settings(SVCLINK=svclink_settings(server, amqp_url="memory://")):
        handled = Recorder()
        consumer = svclink.sync.EventConsumer("traced.orders", exchange="traced_events", bindings=["order.*"])
        consumer.on("order.paid")(handled.sync)
        running = Running(consumer, "sync")
        eventually(_consuming, what="the consumer consuming")
        response: Any = get(side, "/traced/", {"traceparent": TP})  # the aio side: /atraced/
        assert response.status_code == 200
        handled.wait(1)
        running.stop()
    (client,) = telemetry.spans("GET /downstream")
    assert client.get_span_context().trace_id == trace_id
    assert client.parent is not None and client.parent.span_id == parent_id
    (producer,) = telemetry.spans("publish traced_events")
    assert producer.get_span_context().trace_id == trace_id
    (process,) = eventually(lambda: telemetry.spans("process traced.orders"), what="the handler's span")
    assert process.get_span_context().trace_id == trace_id
    assert process.parent is not None and process.parent.span_id == producer.get_span_context().span_id


def _consuming() -> bool:
    broker = get_broker()
    return broker.queue_exists("traced.orders") and broker.consumer_count("traced.orders") >= 1
