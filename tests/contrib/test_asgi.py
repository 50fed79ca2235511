"""The ASGI middleware on a real server: service B (tests/asgi_app.py) under uvicorn on 127.0.0.1.

This process is service ``a``; B is ``b`` in its own process; C is the test server here.
B's bare ASGI app and its Starlette app must behave the same, and both must pass the
context on to C.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

import svclink
from svclink.context import Claims, bind, sign, verify

from ..conftest import Side
from ..server import Recorded, Reply, TestServer
from ..services import Uvicorn, clean_env

KEY = "asgi-test-signing-key-0123456789"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
APPS = ["/bare", "/starlette"]


@pytest.fixture(scope="module")
def c() -> Iterator[TestServer]:
    server = TestServer().start()
    server.route("GET", "/from-b", Reply(200, {"c": "ok"}))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def b(c: TestServer) -> Iterator[Uvicorn]:
    env = clean_env(
        SVCLINK_SERVICE_NAME="b",
        SVCLINK_SERVICE_CONNECTIONS="c",
        SVCLINK_SERVICE_C_URL=c.url,
        SVCLINK_SIGNING_KEY=KEY,
        SVCLINK_MAX_DEADLINE="5",
    )
    server = Uvicorn("tests.asgi_app:app", env)
    yield server
    server.stop()


@pytest.fixture
def as_a(b: Uvicorn) -> Uvicorn:
    svclink.configure(
        service_name="a",
        service_connections=["b"],
        service_hosts={"b": b.url},
        signing_key=KEY,
        response_timeout=8,
    )
    return b


def seen_by_c(c: TestServer, request_id: str) -> list[Recorded]:
    return [r for r in c.calls("GET", "/from-b") if r.headers.get("x-request-id") == request_id]


def c_claims(req: Recorded) -> Claims:
    return verify(req.headers["x-svclink-context"], keys=[KEY], audience="c", now=time.time())


@pytest.mark.parametrize("app", APPS)
def test_a_verified_caller_is_bound_and_passed_on(side: Side, as_a: Uvicorn, c: TestServer, app: str) -> None:
    rid = f"asgi-{side.id}-{app[1:]}"
    with bind(request_id=rid, user_id="9", user_claims={"role": "ops"}, traceparent=TP):
        body = side.call("b", "GET", f"{app}/call-c")
    assert body["verified"] and body["caller"] == "a" and body["caller_user"] == "9"
    assert (body["request_id"], body["user_id"], body["traceparent"]) == (rid, "9", TP)
    assert 0 < body["deadline_ms"] <= 5000  # our 8 s budget, clamped to B's max_deadline
    assert body["c"] == {"c": "ok"}
    (req,) = seen_by_c(c, rid)
    claims = c_claims(req)
    assert (claims.caller, claims.request_id, claims.user_id) == ("b", rid, "9")
    assert dict(claims.user_claims) == {"role": "ops"}
    assert req.headers["traceparent"] == TP
    assert 0 < int(req.headers["x-svclink-deadline-ms"]) <= 5000


@pytest.mark.parametrize("app", APPS)
def test_the_response_carries_the_request_id(side: Side, as_a: Uvicorn, app: str) -> None:
    with bind(request_id=f"resp-{side.id}"):
        response = side.call("b", "GET", f"{app}/echo", raw_response=True)
    assert response.headers["x-request-id"] == f"resp-{side.id}"
    made = requests.get(f"{as_a.url}{app}/echo", timeout=5)
    assert (
        len(made.headers["x-request-id"]) == 32 and made.json()["request_id"] == made.headers["x-request-id"]
    )


def test_an_authenticated_starlette_user_goes_on_to_c(side: Side, as_a: Uvicorn, c: TestServer) -> None:
    rid = f"starlette-user-{side.id}"
    with bind(request_id=rid, user_id="9"):
        body = side.call("b", "GET", "/starlette/call-c", headers={"X-Test-User": "carol"})
    assert body["caller_user"] == "9" and body["user_id"] == "carol"
    (req,) = seen_by_c(c, rid)
    assert c_claims(req).user_id == "carol"


def forged(rid: str) -> str:
    now = int(time.time())
    return sign(Claims("a", "b", rid, now, now + 60, "root"), "forged-key-0123456789abcdef")


def expired(rid: str) -> str:
    then = int(time.time()) - 600
    return sign(Claims("a", "b", rid, then, then + 60, "root"), KEY)


def for_c(rid: str) -> str:
    now = int(time.time())
    return sign(Claims("a", "c", rid, now, now + 60, "root"), KEY)


@pytest.mark.parametrize(
    ("make", "reason"),
    [(forged, "bad signature"), (expired, "expired"), (for_c, "wrong audience"), (None, "unsigned")],
)
@pytest.mark.parametrize("app", APPS)
def test_an_unproved_caller_is_not_trusted(
    side: Side, as_a: Uvicorn, c: TestServer, app: str, make: object, reason: str
) -> None:
    rid = f"untrusted-{side.id}-{app[1:]}-{reason.replace(' ', '-')}"
    if make is None:
        svclink.configure(service_name="a", service_connections=["b"], service_hosts={"b": as_a.url})
        headers = {}
    else:
        headers = {"X-Svclink-Context": make(rid)}  # type: ignore[operator]
    with bind(request_id=rid, user_id="root"):
        body = side.call("b", "GET", f"{app}/call-c", headers=headers)
    assert not body["verified"] and body["reason"] == reason
    assert body["caller"] is None and body["user_id"] is None
    (req,) = seen_by_c(c, rid)
    assert c_claims(req).user_id is None  # the claimed user never travels on
    with bind(request_id=rid), pytest.raises(svclink.Unauthorized) as info:
        side.call("b", "GET", "/strict/call-c", headers=headers)
    assert info.value.error_code == "svclink_unverified_caller"
    assert info.value.request_id == rid
    assert len(seen_by_c(c, rid)) == 1  # the strict app never ran


def test_strict_mode_lets_a_verified_caller_through(side: Side, as_a: Uvicorn) -> None:
    with bind(request_id=f"strict-ok-{side.id}"):
        assert side.call("b", "GET", "/strict/echo")["verified"]


def test_an_incoming_budget_is_honoured_and_clamped(as_a: Uvicorn, c: TestServer) -> None:
    spent = requests.get(
        f"{as_a.url}/bare/call-c", headers={"X-Request-ID": "dl-0", "X-Svclink-Deadline-Ms": "0"}, timeout=5
    ).json()
    assert spent["c"] == "timeout" and seen_by_c(c, "dl-0") == []  # refused before any I/O
    long = requests.get(
        f"{as_a.url}/bare/call-c",
        headers={"X-Request-ID": "dl-1", "X-Svclink-Deadline-Ms": "999999"},
        timeout=5,
    ).json()
    assert 0 < long["deadline_ms"] <= 5000
    (req,) = seen_by_c(c, "dl-1")
    assert 0 < int(req.headers["x-svclink-deadline-ms"]) <= 5000


def run_asgi(
    app: object, scope: dict[str, object], incoming_messages: list[dict[str, object]]
) -> list[dict[str, object]]:
    """Drive an ASGI app through one connection in-process; the messages it sent."""
    import asyncio

    sent: list[dict[str, object]] = []
    queue = list(incoming_messages)

    async def receive() -> dict[str, object]:
        return queue.pop(0) if queue else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    return sent


def test_websockets_are_bound_and_refused_like_requests() -> None:
    from svclink.contrib.asgi import SvclinkMiddleware

    svclink.configure(service_name="b", signing_key=KEY)
    seen: list[object] = []

    async def ws_app(scope: dict[str, object], receive: object, send: object) -> None:
        from svclink.context import current

        seen.append((scope["svclink"], current()))
        await send({"type": "websocket.accept"})  # type: ignore[operator]

    now = int(time.time())
    token = sign(Claims("a", "b", "ws-1", now, now + 60, "4"), KEY)
    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [(b"x-request-id", b"ws-1"), (b"x-svclink-context", token.encode())],
    }
    assert run_asgi(SvclinkMiddleware(ws_app), scope, [{"type": "websocket.connect"}]) == [
        {"type": "websocket.accept"}
    ]
    ((caller, context),) = seen
    assert caller.verified and caller.service == "a"  # type: ignore[attr-defined]
    assert (context.request_id, context.user_id) == ("ws-1", "4")  # type: ignore[attr-defined]
    unsigned = {**scope, "headers": [(b"x-request-id", b"ws-2")]}
    sent = run_asgi(SvclinkMiddleware(ws_app, require_signed_context=True), unsigned, [])
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "caller context not verified"}]
    assert len(seen) == 1  # the app never saw the refused connection


def test_lifespan_passes_straight_through() -> None:
    from svclink.contrib.asgi import SvclinkMiddleware

    scopes: list[object] = []

    async def lifespan_app(scope: dict[str, object], receive: object, send: object) -> None:
        scopes.append(scope)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    run_asgi(SvclinkMiddleware(lifespan_app), scope, [])
    assert scopes == [scope] and "svclink" not in scope


@pytest.fixture(scope="module")
def b_in_an_insanic_fleet(c: TestServer) -> Iterator[Uvicorn]:
    env = clean_env(
        SVCLINK_SERVICE_NAME="b",
        SVCLINK_SERVICE_CONNECTIONS="c",
        SVCLINK_SERVICE_C_URL=c.url,
        SVCLINK_INSANIC_HEADERS="true",
    )
    server = Uvicorn("tests.asgi_app:app", env)
    yield server
    server.stop()


@pytest.mark.parametrize("app", APPS)
def test_an_insanic_callers_request_id_goes_on_under_both_names(
    b_in_an_insanic_fleet: Uvicorn, c: TestServer, app: str
) -> None:
    rid = f"insanic-{app[1:]}-0123456789abcdef"
    made = requests.get(  # as an Insanic service calls: its own header only
        f"{b_in_an_insanic_fleet.url}{app}/call-c", headers={"X-Insanic-Request-ID": rid}, timeout=8
    )
    assert made.json()["request_id"] == rid
    (req,) = seen_by_c(c, rid)
    assert req.headers["x-insanic-request-id"] == rid  # an Insanic service C sees it too
