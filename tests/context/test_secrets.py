"""No secret svclink was given ever shows in a log record or an exception text, on both sides.

Canary secrets sit in the signing key, the AMQP password, an ``Authorization`` header and
a ``?token=`` query parameter (and a forger's key). Every log record of every logger is
captured at DEBUG and formatted with its traceback; every exception raised is read as
``str``, ``repr``, its ``message``/``description`` and its whole ``__cause__``/``__context__``
chain (suppressed links included). None may contain ``CANARY``.

The nasty case is a server that quotes the request's headers and URL back in its error
body. Those are the server's words, kept as they came in ``APIException.body``; but the
exception's text, ``message`` and ``description`` are svclink's, and never carry the
credentials svclink sent with that call, however the server spelled them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import urlencode

import pytest

import svclink
import svclink.aio
import svclink.sync
import svclink.testing
from svclink.context import EVENTS_AUDIENCE, Claims, sign
from svclink.contrib.asgi import SvclinkMiddleware
from svclink.core.http.responses import EXCERPT_CHARS

from ..conftest import Side
from ..events_support import MemoryView, Recorder, Running, eventually
from ..server import Recorded, Reply, TestServer, closed_port

MARK = "CANARY"
SIGNING_KEY = "CANARY-signing-key-7c1e4b90"
FORGER_KEY = "CANARY-forger-key-93ad0f11"
AMQP_PASSWORD = "CANARY-amqp-pw-5d2e"
AUTH_TOKEN = "CANARY-auth-6b1f0a"
QUERY_TOKEN = "CANARY-query-2c9e77"
AUTH = {"Authorization": f"Bearer {AUTH_TOKEN}"}
QUERY = {"token": QUERY_TOKEN, "q": "x"}


# -- capturing -------------------------------------------------------------------------


class Capture(logging.Handler):
    """Every record of every logger, formatted as a handler would write it (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[Capture]:
    root = logging.getLogger()
    capture, level = Capture(), root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    root.setLevel(level)


def exception_texts(exc: BaseException) -> list[str]:
    """Everything a log line, an error tracker or a ``print`` could show of ``exc``."""
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is seen for seen in chain):
            continue
        chain.append(item)
        todo += [item.__cause__, item.__context__]  # suppressed contexts too: they are reachable
    texts = ["".join(traceback.format_exception(exc))]
    for item in chain:
        texts += [str(item), repr(item)]
        if isinstance(item, svclink.APIException):
            texts += [str(item.message), str(item.description)]
    return texts


def assert_clean(*texts: str, also: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (MARK, *also):
            assert secret not in text, f"{secret!r} leaked in:\n{text}"


def raised(fn: Any, *args: Any, **kwargs: Any) -> BaseException:
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


# -- HTTP ------------------------------------------------------------------------------


def echo(status: int, style: str = "json") -> Any:
    """A responder that quotes the request back, the way careless error pages do."""

    def reply(rec: Recorded) -> Reply:
        url = f"{rec.path}?{urlencode([(k, v) for k, vs in rec.query.items() for v in vs])}"
        auth = rec.headers.get("authorization", "")
        token = auth.split()[-1] if auth else ""
        if style == "json":
            return Reply(
                status,
                {
                    "detail": f"token {token} refused for {rec.method} {url}",
                    "description": f"request headers: {rec.headers}",
                    "code": "bad_token",
                },
            )
        lines = [f"{status} refused {rec.method} {url}", *(f"{k}: {v}" for k, v in rec.headers.items())]
        if style == "html":
            page = f"<html><title>token {token} refused</title><pre>{chr(10).join(lines)}</pre>"
            return Reply(status, body=page.encode(), headers={"Content-Type": "text/html"})
        return Reply(status, body="\n".join(lines).encode())

    return reply


def configure(url: str, **overrides: Any) -> svclink.Settings:
    values: dict[str, Any] = {
        "service_name": "api",
        "service_connections": ["user"],
        "service_hosts": {"user": url},
        "signing_key": SIGNING_KEY,
        "amqp_url": "memory://",
        "response_timeout": 3,
        "observers": [svclink.LoggingObserver()],
    }
    values.update(overrides)
    return svclink.configure(**values)


def call(side: Side, endpoint: str, **kwargs: Any) -> Any:
    return side.call("user", "GET", endpoint, headers=AUTH, query_params=QUERY, **kwargs)


def test_a_successful_call(side: Side, server: TestServer, logs: Capture) -> None:
    configure(server.url)
    server.route("GET", "/ok", Reply(200, {"ok": True}))
    assert call(side, "/ok") == {"ok": True}
    (req,) = server.requests
    assert req.headers["authorization"] == f"Bearer {AUTH_TOKEN}" and req.query["token"] == [QUERY_TOKEN]
    # the transport's own records were captured, so the check below is not vacuous: urllib3's
    # request line has the query (masked); httpx's pool logs its steps but no URL; aiohttp's
    # client logs nothing for a call that succeeds
    if side.name == "sync":
        assert "[redacted]" in logs.text()
    elif side.transport == "httpx":
        assert "httpcore.http11" in logs.text()
    assert_clean(logs.text())


@pytest.mark.parametrize("style", ["json", "text", "html"])
@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_a_4xx_that_quotes_the_request_back(
    side: Side, server: TestServer, logs: Capture, status: int, style: str
) -> None:
    configure(server.url)
    server.route("GET", "/echo", echo(status, style))
    exc = raised(call, side, "/echo")
    assert isinstance(exc, svclink.ClientError) and exc.status_code == status
    assert "refused" in str(exc)  # the server's words are kept, only the credentials are masked
    assert_clean(*exception_texts(exc), logs.text())


def test_an_excerpt_cut_inside_a_quoted_credential(side: Side, server: TestServer, logs: Capture) -> None:
    configure(server.url)
    head = "{'accept': 'application/json', 'authorization': 'Bearer "
    padding = "x" * (EXCERPT_CHARS - len(head) - len("CANARY-a"))
    description = padding + head + AUTH_TOKEN + "'}"
    server.route("GET", "/echo", Reply(400, {"detail": "bad request", "description": description}))
    exc = raised(call, side, "/echo")
    assert isinstance(exc, svclink.BadRequest) and exc.description is not None
    assert exc.description.startswith(padding) and exc.description.endswith("[redacted]'")
    assert_clean(*exception_texts(exc), logs.text())


def test_an_exception_made_by_hand_shows_no_credential() -> None:
    exc = svclink.NotFound(f"Authorization: Bearer {AUTH_TOKEN}", service="user", method="GET", endpoint="/x")
    assert_clean(str(exc), repr(exc))
    assert repr(exc).startswith("NotFound('user: GET /x: Authorization: [redacted]")


def test_a_5xx_storm_that_quotes_the_request_back_with_retries(
    side: Side, server: TestServer, logs: Capture
) -> None:
    configure(server.url, retry=svclink.RetryPolicy(total=2, backoff_factor=0.01))
    server.route("GET", "/echo", echo(503, "text"))
    exc = raised(call, side, "/echo")
    assert isinstance(exc, svclink.ServerError) and len(server.requests) == 3
    assert sum("retrying GET" in line for line in logs.lines) == 2
    assert_clean(*exception_texts(exc), logs.text())


def test_a_retried_call_that_then_succeeds(side: Side, server: TestServer, logs: Capture) -> None:
    configure(server.url, retry=svclink.RetryPolicy(total=2, backoff_factor=0.01))
    server.route("GET", "/flaky", echo(502, "json"), Reply(200, {"ok": True}))
    assert call(side, "/flaky") == {"ok": True}
    assert any("retrying GET" in line for line in logs.lines)
    assert_clean(logs.text())


def test_a_timeout(side: Side, server: TestServer, logs: Capture) -> None:
    configure(server.url)
    server.route("GET", "/slow", Reply(200, {}, delay=2.0))
    exc = raised(call, side, "/slow", response_timeout=0.3)
    assert isinstance(exc, svclink.ServiceTimeout)
    assert_clean(*exception_texts(exc), logs.text())


def test_a_refused_connection(side: Side, logs: Capture) -> None:
    configure(f"http://127.0.0.1:{closed_port()}", retry=svclink.RetryPolicy(total=1, backoff_factor=0.01))
    exc = raised(call, side, "/x")
    assert isinstance(exc, svclink.ServiceUnavailable)
    assert_clean(*exception_texts(exc), logs.text())


def test_a_reset_connection(side: Side, server: TestServer, logs: Capture) -> None:
    configure(server.url, retry=svclink.RetryPolicy(total=0))
    server.route("GET", "/reset", Reply(reset=True))
    exc = raised(call, side, "/reset")
    assert isinstance(exc, svclink.ServiceUnavailable)
    assert_clean(*exception_texts(exc), logs.text())


def test_an_open_circuit(side: Side, server: TestServer, logs: Capture) -> None:
    configure(
        server.url,
        retry=svclink.RetryPolicy(total=0),
        circuit_breaker=svclink.BreakerPolicy(failure_threshold=2, reset_timeout=60),
    )
    server.route("GET", "/echo", echo(500, "json"))
    errors = [raised(call, side, "/echo") for _ in range(3)]
    assert [type(e) for e in errors] == [svclink.ServerError, svclink.ServerError, svclink.CircuitOpen]
    assert len(server.requests) == 2
    assert any("circuit breaker" in line for line in logs.lines)
    assert_clean(*(t for e in errors for t in exception_texts(e)), logs.text())


# -- incoming requests: the Django and ASGI middlewares ----------------------------------------


def forged(request_id: str, audience: str) -> str:
    """A well-formed signed context, signed with a key the receiver does not have."""
    now = int(time.time())
    return sign(Claims("gateway", audience, request_id, now, now + 60, "7", {"role": "admin"}), FORGER_KEY)


def incoming_headers(request_id: str) -> dict[str, str]:
    return {
        "X-Request-ID": request_id,
        "X-Svclink-Caller": "gateway",
        "X-Svclink-Context": forged(request_id, "api"),
        **AUTH,
        "Cookie": f"sessionid={AUTH_TOKEN}",
    }


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """Calls the ``user`` service on the running loop (aio) or on a thread (sync code in an async app)."""
    if scope["_side"] == "aio":
        user = await svclink.aio.get_service("user")
        downstream = await user.http_dispatch("GET", "/downstream")
    else:
        service = svclink.sync.get_service("user")
        downstream = await asyncio.to_thread(service.http_dispatch, "GET", "/downstream")
    body = json.dumps({"reason": scope["svclink"].reason, "downstream": downstream}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


def asgi_get(side: Side, strict: bool, headers: dict[str, str]) -> tuple[int, bytes]:
    app = SvclinkMiddleware(_asgi_app, require_signed_context=strict)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/whoami", "raw_path": b"/whoami", "root_path": "",
        "query_string": urlencode(QUERY).encode(), "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80), "_side": side.name,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_the_asgi_middleware_with_a_forged_context(
    side: Side, server: TestServer, logs: Capture, strict: bool
) -> None:
    configure(server.url)
    server.route("GET", "/downstream", Reply(200, {"ok": True}))
    headers = incoming_headers(f"asgi-{side.name}")
    status, body = asgi_get(side, strict, headers)
    assert status == (401 if strict else 200)
    assert b"bad signature" in body
    assert len(server.requests) == (0 if strict else 1)
    assert any("bad signature" in line for line in logs.lines)
    assert_clean(body.decode(), logs.text(), also=(headers["X-Svclink-Context"],))


@pytest.fixture
def django_client() -> Any:
    from ..django_project import setup

    setup()
    from django.test import AsyncClient, Client, override_settings

    return Client, AsyncClient, override_settings


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_the_django_middleware_with_a_forged_context(
    side: Side, server: TestServer, logs: Capture, strict: bool, django_client: Any
) -> None:
    client_class, async_client_class, override_settings = django_client
    server.route("GET", "/downstream", Reply(200, {"ok": True}))
    values = {
        "service_name": "api", "service_connections": ["user"], "service_hosts": {"user": server.url},
        "signing_key": SIGNING_KEY, "response_timeout": 3, "require_signed_context": strict,
    }  # fmt: skip
    headers = incoming_headers(f"dj-{side.name}")
    path = "/whoami/?" + urlencode(QUERY)
    with override_settings(SVCLINK=values):
        if side.runner is None:
            response = client_class().get(path, headers=headers)
        else:
            response = side.runner.run(async_client_class().get("/a" + path.lstrip("/"), headers=headers))
    assert response.status_code == (401 if strict else 200)
    assert b"bad signature" in response.content
    assert any("bad signature" in line for line in logs.lines)
    assert_clean(response.content.decode(), logs.text(), also=(headers["X-Svclink-Context"],))


# -- events ----------------------------------------------------------------------------


def publisher(side: Side) -> Any:
    return svclink.sync.Publisher() if side.name == "sync" else svclink.aio.Publisher()


def publish(side: Side, pub: Any, event_type: str, data: Any, **kwargs: Any) -> Any:
    if side.runner is None:
        return pub.publish(event_type, data, **kwargs)

    async def go() -> Any:
        try:
            return await pub.publish(event_type, data, **kwargs)
        finally:
            await pub.close()

    return side.runner.run(go())


@pytest.mark.parametrize("broker", ["closed-port", "wrong-password"])
def test_a_publish_that_cannot_reach_the_broker(side: Side, logs: Capture, broker: str) -> None:
    where = f"127.0.0.1:{closed_port()}" if broker == "closed-port" else "127.0.0.1:5672"
    configure("http://user", amqp_url=f"amqp://guest:{AMQP_PASSWORD}@{where}/", connect_timeout=2)
    pub = publisher(side)
    exc = raised(publish, side, pub, "user.updated", {"id": 1}, timeout=4)
    # an unreachable node is an outage; a refused login is a configuration error, raised at once
    assert isinstance(exc, svclink.BrokerUnavailable if broker == "closed-port" else svclink.EventError)
    if side.name == "sync":
        pub.close()
    assert_clean(*exception_texts(exc), logs.text())


def test_a_consumer_that_cannot_reach_the_broker(side: Side, logs: Capture) -> None:
    configure(
        "http://user", amqp_url=f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:{closed_port()}/", connect_timeout=1
    )
    module = svclink.sync if side.name == "sync" else svclink.aio
    consumer = module.EventConsumer("secrets.unreachable")
    recorder = Recorder()
    consumer.on("user.updated")(recorder.sync if side.name == "sync" else recorder.aio)
    running = Running(consumer, side.name)
    eventually(
        lambda: sum("consumer secrets.unreachable" in line for line in logs.lines) >= 2, what="retries"
    )
    running.stop()
    assert_clean(logs.text())


@pytest.fixture
def memory_broker() -> Iterator[MemoryView]:
    view = MemoryView()
    yield view
    view.close()


def consume_one(side: Side, queue: str, handler_sync: Any, handler_aio: Any, **kwargs: Any) -> Running:
    module = svclink.sync if side.name == "sync" else svclink.aio
    consumer = module.EventConsumer(queue, exchange="secrets.ex", max_attempts=1, **kwargs)
    consumer.on("user.updated")(handler_sync if side.name == "sync" else handler_aio)
    return Running(consumer, side.name)


def dead_letter(view: MemoryView, queue: str) -> dict[str, Any]:
    got = eventually(lambda: view.get(queue + ".dead"), what="the dead-lettered message")
    return dict(got.headers)


def svclink_headers(headers: dict[str, Any]) -> str:
    """The headers svclink wrote on the dead-lettered copy (the original ones are the publisher's)."""
    return json.dumps({k: v for k, v in headers.items() if k.startswith("x-svclink-")}, default=str)


def test_a_handler_whose_call_fails_is_dead_lettered_without_the_callers_secrets(
    side: Side, server: TestServer, logs: Capture, memory_broker: MemoryView
) -> None:
    configure(server.url, retry=svclink.RetryPolicy(total=0))
    server.route("GET", "/echo", echo(401, "text"))

    def handle(event: Any) -> None:
        svclink.sync.get_service("user").http_dispatch("GET", "/echo", headers=AUTH, query_params=QUERY)

    async def ahandle(event: Any) -> None:
        user = await svclink.aio.get_service("user")
        await user.http_dispatch("GET", "/echo", headers=AUTH, query_params=QUERY)

    queue = f"secrets.call.{side.name}"
    running = consume_one(side, queue, handle, ahandle)
    eventually(lambda: memory_broker.consumers(queue) == 1, what="the consumer")
    publish(side, publisher(side), "user.updated", {"id": 1}, exchange="secrets.ex")
    headers = dead_letter(memory_broker, queue)
    running.stop()
    assert headers["x-svclink-error"].startswith("Unauthorized: user: GET /echo -> 401")
    assert len(server.requests) == 1
    assert_clean(svclink_headers(headers), logs.text())


def test_a_handler_error_quoting_credentials_is_redacted_in_headers_and_logs(
    side: Side, logs: Capture, memory_broker: MemoryView
) -> None:
    configure("http://user")
    text = (
        f"401 Client Error: Unauthorized for url: http://billing/api?token={QUERY_TOKEN}&a=1\n"
        f"request had Authorization: Bearer {AUTH_TOKEN} and key {SIGNING_KEY}"
    )

    def handle(event: Any) -> None:
        raise RuntimeError(text)

    async def ahandle(event: Any) -> None:
        raise RuntimeError(text)

    queue = f"secrets.raise.{side.name}"
    running = consume_one(side, queue, handle, ahandle)
    eventually(lambda: memory_broker.consumers(queue) == 1, what="the consumer")
    publish(side, publisher(side), "user.updated", {"id": 1}, exchange="secrets.ex")
    headers = dead_letter(memory_broker, queue)
    running.stop()
    assert "RuntimeError: 401 Client Error" in headers["x-svclink-error"]
    assert any("Traceback" in line and "RuntimeError" in line for line in logs.lines)
    assert_clean(svclink_headers(headers), logs.text())


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_an_event_with_a_forged_context(
    side: Side, logs: Capture, memory_broker: MemoryView, strict: bool
) -> None:
    configure("http://user", require_signed_context=strict)
    recorder = Recorder()
    queue = f"secrets.forged.{side.name}"
    running = consume_one(side, queue, recorder.sync, recorder.aio)
    eventually(lambda: memory_broker.consumers(queue) == 1, what="the consumer")
    token = forged("evt-1", EVENTS_AUDIENCE)
    body = {
        "version": 1, "event_id": "e-1", "event_type": "user.updated",
        "occurred_at": "2024-05-01T12:00:00Z", "source": "gateway", "context": {"request_id": "evt-1"},
        "data": {"id": 1},
    }  # fmt: skip
    memory_broker.publish_raw(
        "secrets.ex", "user.updated", json.dumps(body).encode(),
        {"X-Svclink-Context": token, "X-Request-ID": "evt-1", **AUTH},
    )  # fmt: skip
    if strict:
        headers = dead_letter(memory_broker, queue)
        assert headers["x-svclink-dead-reason"] == "untrusted"
        assert "bad signature" in headers["x-svclink-error"]
        assert_clean(svclink_headers(headers), also=(token,))
    else:
        (event,) = recorder.wait(1)
        assert event.context is not None and event.context.caller_service is None
    running.stop()
    assert any("bad signature" in line for line in logs.lines)
    assert_clean(logs.text(), also=(token,))
