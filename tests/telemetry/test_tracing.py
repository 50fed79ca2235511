"""Spans and metrics, read back from OpenTelemetry's SDK, on both sides and across the broker."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import svclink

from ..conftest import Side, use_server
from ..events_support import EventEnv, Recorder, env_fixture, eventually
from ..server import Reply, TestServer
from .conftest import Telemetry

env = env_fixture()


def test_a_call_is_one_client_span_with_the_http_conventions(
    side: Side, server: TestServer, telemetry: Telemetry
) -> None:
    use_server(server)
    server.route("GET", "/api/v1/users/5", Reply(200, {"id": 5}))
    before = telemetry.count("http.client.request.duration", **{"http.response.status_code": 200})
    assert side.call("user", "GET", "/api/v1/users/{id}", path_params={"id": 5}) == {"id": 5}
    (span,) = telemetry.spans("GET /api/v1/users/{id}")
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(server.url.rsplit(":", 1)[1])
    assert attributes["url.full"] == f"{server.url}/api/v1/users/5"
    assert attributes["http.response.status_code"] == 200
    assert "error.type" not in attributes
    # the request carried this span as its parent: the callee's spans join the trace
    (request,) = server.calls("GET", "/api/v1/users/5")
    _version, trace_id, span_id, _flags = request.headers["traceparent"].split("-")
    context = span.get_span_context()
    assert (int(trace_id, 16), int(span_id, 16)) == (context.trace_id, context.span_id)
    after = telemetry.count("http.client.request.duration", **{"http.response.status_code": 200})
    assert after == before + 1


def test_each_retry_is_an_event_and_a_failed_call_an_error_span(
    side: Side, server: TestServer, telemetry: Telemetry
) -> None:
    use_server(server, retry=svclink.RetryPolicy(total=2, backoff_factor=0.01))
    server.route("GET", "/flaky", Reply(503), Reply(503), Reply(503))
    retries = telemetry.count("svclink.http.retries", **{"svclink.service": "user"})
    with pytest.raises(svclink.ServerError):
        side.call("user", "GET", "/flaky")
    (span,) = telemetry.spans("GET /flaky")
    assert [e.name for e in span.events] == ["retry", "retry", "exception"]  # the raise is recorded too
    assert (
        span.events[0].attributes is not None
        and span.events[0].attributes["http.response.status_code"] == 503
    )
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "ServerError"
    assert telemetry.count("svclink.http.retries", **{"svclink.service": "user"}) == retries + 2


def test_an_open_breaker_is_an_event_on_the_refused_call(
    side: Side, server: TestServer, telemetry: Telemetry
) -> None:
    use_server(server, circuit_breaker=svclink.BreakerPolicy(failure_threshold=1, reset_timeout=30))
    server.route("GET", "/down", Reply(500))
    with pytest.raises(svclink.ServerError):
        side.call("user", "GET", "/down")
    with pytest.raises(svclink.CircuitOpen):
        side.call("user", "GET", "/down")
    refused = telemetry.spans("GET /down")[-1]
    assert [e.name for e in refused.events] == ["circuit_open", "exception"]
    assert dict(refused.attributes or {})["error.type"] == "CircuitOpen"


def test_a_publish_and_its_handling_are_one_trace_across_the_broker(
    env: EventEnv, telemetry: Telemetry
) -> None:
    rec = Recorder()
    queue = env.queue()
    env.consume(queue, {"order.paid": rec}, bindings=["order.*"])
    processed = telemetry.count("messaging.process.duration", **{"messaging.consumer.group.name": queue})
    sent = env.publish("order.paid", {"order": 7})
    rec.wait(1)
    (producer,) = telemetry.spans(f"publish {env.exchange}")
    assert producer.kind is SpanKind.PRODUCER
    attributes = dict(producer.attributes or {})
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.rabbitmq.destination.routing_key"] == "order.paid"
    assert attributes["messaging.message.id"] == sent.event_id

    (consumer,) = eventually(lambda: telemetry.spans(f"process {queue}"), what="the consumer's span")
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.parent is not None and consumer.parent.span_id == producer.get_span_context().span_id
    assert consumer.get_span_context().trace_id == producer.get_span_context().trace_id
    consumed = dict(consumer.attributes or {})
    assert consumed["messaging.message.id"] == sent.event_id and consumed["svclink.attempt"] == 1
    assert consumed["svclink.outcome"] == "ack"
    eventually(
        lambda: (
            telemetry.count("messaging.process.duration", **{"messaging.consumer.group.name": queue})
            == processed + 1
        ),
        what="the process duration recorded",
    )


def test_a_dead_lettered_event_is_counted_with_its_reason(env: EventEnv, telemetry: Telemetry) -> None:
    queue = env.queue()
    env.consume(queue, {"order.paid": Recorder(always_fail=True)}, bindings=["order.*"], max_attempts=1)
    dead = telemetry.count("svclink.events.dead_lettered", **{"messaging.consumer.group.name": queue})
    env.publish("order.paid", {"order": 8})
    eventually(
        lambda: (
            telemetry.count("svclink.events.dead_lettered", **{"messaging.consumer.group.name": queue})
            == dead + 1
        ),
        what="the dead letter counted",
    )
    spans = eventually(lambda: telemetry.spans(f"process {queue}"), what="the consumer's span")
    attributes = dict(spans[0].attributes or {})
    assert attributes["svclink.outcome"] == "dead-letter"
    assert attributes["svclink.dead_letter_reason"] == "max-attempts"
    assert spans[0].status.status_code is StatusCode.ERROR


def test_publishes_are_timed_until_confirmed(env: EventEnv, telemetry: Telemetry) -> None:
    env.sink(["audit.*"], "audit")
    before = telemetry.count(
        "messaging.client.operation.duration", **{"messaging.destination.name": env.exchange}
    )
    env.publish("audit.logged", {"n": 1})
    env.pub.publish_many([("audit.logged", {"n": 2}), ("audit.logged", {"n": 3})], exchange=env.exchange)
    after = telemetry.count(
        "messaging.client.operation.duration", **{"messaging.destination.name": env.exchange}
    )
    assert after == before + 3
