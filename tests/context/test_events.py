"""Events carry the signed context: a consumer's handler runs as the publisher's request and user,
and only when the signature proves it. Each scenario on (sync, aio) x (RabbitMQ, memory://)."""

from __future__ import annotations

import json
import time
from typing import Any

from svclink.context import EVENTS_AUDIENCE, RequestContext, bind, current, sign, verify
from svclink.core.context.signing import Claims

from ..events_support import EventEnv, Recorder, env_fixture

KEY = "events-test-signing-key-0123456789"

env = env_fixture()


def capture(seen: list[RequestContext | None]) -> Recorder:
    return Recorder(then=lambda event: seen.append(current()))


def test_the_handler_runs_as_the_publishers_verified_user(env: EventEnv) -> None:
    env.configure(signing_key=KEY)
    env.pub = env.publisher()
    seen: list[RequestContext | None] = []
    rec = capture(seen)
    queue = env.queue()
    env.consume(queue, {"order.created": rec}, bindings=["order.*"])
    with bind(request_id="ev-1", user_id="77", user_claims={"plan": "pro"}):
        env.publish("order.created", {"n": 1})
    rec.wait(1)
    (ctx,) = seen
    assert ctx is not None
    assert (ctx.request_id, ctx.caller_service, ctx.user_id) == ("ev-1", env.settings.service_name, "77")
    assert dict(ctx.user_claims) == {"plan": "pro"}
    assert ctx.deadline is None  # a request's deadline never follows it into a queue


def test_the_signed_context_is_in_the_message_headers(env: EventEnv) -> None:
    env.configure(signing_key=KEY)
    env.pub = env.publisher()
    sink = env.sink(["order.*"])
    with bind(request_id="ev-2", user_id="5"):
        env.publish("order.created", {})
    got = env.broker.get(sink)
    assert got is not None
    headers = {k.lower(): v for k, v in got.headers.items()}
    claims = verify(headers["x-svclink-context"], keys=[KEY], audience=EVENTS_AUDIENCE, now=time.time())
    assert (claims.request_id, claims.user_id) == ("ev-2", "5")
    assert json.loads(got.body)["context"]["request_id"] == "ev-2"


def forged_headers(
    request_id: str, key: str, audience: str = EVENTS_AUDIENCE, age: int = 0
) -> dict[str, Any]:
    now = int(time.time()) - age
    token = sign(Claims("billing", audience, request_id, now, now + 60, "root"), key)
    return {"x-request-id": request_id, "x-svclink-context": token, "x-event-type": "order.created"}


def envelope(request_id: str) -> bytes:
    return json.dumps(
        {
            "version": 1,
            "event_id": f"id-{request_id}",
            "event_type": "order.created",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "source": "billing",
            "context": {"request_id": request_id},
            "data": {},
        }
    ).encode()


def test_a_forged_expired_or_misaddressed_event_context_is_not_trusted(env: EventEnv) -> None:
    env.configure(signing_key=KEY)
    seen: list[RequestContext | None] = []
    rec = capture(seen)
    queue = env.queue()
    env.consume(queue, {"order.created": rec}, bindings=["order.*"])
    cases = {
        "forged": forged_headers("forged", "forged-key-0123456789abcdef"),
        "expired": forged_headers("expired", KEY, age=600),
        "http-token": forged_headers("http-token", KEY, audience=env.settings.service_name or ""),
    }
    for rid, headers in cases.items():
        env.broker.publish_raw(env.exchange, "order.created", envelope(rid), headers)
    rec.wait(3)
    by_id = {ctx.request_id: ctx for ctx in seen if ctx is not None}
    assert set(by_id) == set(cases)  # the request id is still followed...
    for ctx in by_id.values():
        assert ctx.caller_service is None and ctx.user_id is None  # ...but nobody is believed
