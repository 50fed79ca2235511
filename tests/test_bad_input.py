"""Bad input on every public entry point: a specific svclink exception before any I/O.

Settings, HTTP calls, publishes and consumers are each given wrong types, wrong values,
unserialisable and oversized data. Each must raise the svclink exception for it
(:class:`~svclink.ConfigurationError`, :class:`~svclink.InvalidRequest`,
:class:`~svclink.InvalidEvent`, all ValueErrors) saying what is wrong without echoing a
secret-looking value, and nothing may reach the other side: the test HTTP server records
no request, the broker (memory:// or RabbitMQ) holds no message.

HTTP items already covered elsewhere are not repeated here: header injection and
non-str header values (test_http_errors, core/test_context_headers), endpoint injection
(test_http_errors, core/test_urls), TRACE, nested query values, NaN payload, non-bytes
files, ``response_timeout=0``, ``retry_count=-1`` and ``idempotency_key=""``
(test_http_errors.test_other_bad_arguments_are_refused_before_any_io).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import svclink
import svclink.aio
import svclink.sync
import svclink.testing
from svclink.core.events import topics
from svclink.core.events.envelope import MAX_DEPTH
from svclink.core.events.handling import HandlerTable
from svclink.core.events.message import OutgoingMessage, Properties
from svclink.core.http import service as service_module
from svclink.core.settings import _NOT_FROM_ENV, FIELDS

from .conftest import Side
from .events_support import PARAMS, EventEnv, env_fixture, eventually
from .server import Recorded, Reply, TestServer

#: a secret-looking marker: no error message may repeat it
SECRET = "S3CRET-d0-not-echo"

env = env_fixture(PARAMS)


def refused(exc: BaseException, *, field: str | None = None) -> str:
    """The text of a refusal, checked: a ValueError that does not echo the secret marker."""
    text = str(exc)
    assert isinstance(exc, ValueError), type(exc)
    assert SECRET not in text and SECRET not in repr(exc), text
    if field is not None:
        assert isinstance(exc, svclink.ConfigurationError)
        assert exc.field.split("[")[0] == field, (exc.field, field)
        assert text.startswith(exc.field + ": ") and exc.problem
    return text


# -- settings --------------------------------------------------------------------------

NEEDS_CONNECTIONS = {"required_service_connections", "service_hosts", "circuit_breakers", "service_tls"}

BAD_SETTINGS: list[tuple[str, Any]] = [
    ("service_name", 5),
    ("service_name", "Bad Name"),
    ("service_name", "api\n"),
    ("service_name", "a" * 70),
    ("service_connections", 5),
    ("service_connections", ["User"]),
    ("service_connections", ["user", "user"]),
    ("service_connections", [None]),
    ("required_service_connections", ["billing"]),
    ("required_service_connections", 5),
    ("host_pattern", 5),
    ("host_pattern", "http://user:8000"),
    ("host_pattern", "ftp://{service}"),
    ("host_pattern", "http://{service}:{port}"),
    ("host_pattern", "http://{service}:99999"),
    ("host_pattern", f"http://admin:{SECRET}@{{service}}"),
    ("host_pattern", "http://{service}/?a=1"),
    ("service_hosts", 5),
    ("service_hosts", ["user"]),
    ("service_hosts", {"user": 5}),
    ("service_hosts", {"user": f"http://admin:{SECRET}@user"}),
    ("service_hosts", {"user": "http://user\n"}),
    ("service_hosts", {"billing": "http://billing"}),
    ("amqp_url", 5),
    ("amqp_url", ""),
    ("amqp_url", [5]),
    ("amqp_url", f"http://guest:{SECRET}@rabbit/"),
    ("amqp_url", f"amqp://guest:{SECRET}@[::1"),
    ("amqp_url", f"amqp://guest:{SECRET}@rabbit:notaport/"),
    ("amqp_url", f"amqp://guest:{SECRET}@rabbit:99999/"),
    ("amqp_url", f"amqp://guest:{SECRET}@rab bit/"),
    ("amqp_url", f"amqp://guest:{SECRET}@/"),
    ("amqp_url", ["memory://", f"amqp://guest:{SECRET}@rabbit/"]),
    ("event_exchange", 5),
    ("event_exchange", ""),
    ("event_exchange", "amq.topic"),
    ("event_exchange", "a b"),
    ("event_exchange", "x" * 300),
    ("publish_timeout", 0),
    ("publish_timeout", float("nan")),
    ("publish_timeout", True),
    ("max_message_size", 0),
    ("max_message_size", 600 * 1024 * 1024),
    ("max_message_size", "big"),
    ("amqp_heartbeat", -1),
    ("amqp_heartbeat", 1.5),
    ("amqp_heartbeat", 70_000),
    ("prefetch_count", 0),
    ("prefetch_count", "ten"),
    ("prefetch_count", 70_000),
    ("consumer_concurrency", 0),
    ("consumer_concurrency", 1001),
    ("consumer_concurrency", 2.5),
    ("consumer_grace", 0),
    ("consumer_grace", "long"),
    ("handler_timeout", -1),
    ("handler_timeout", math.inf),
    ("worker_health_port", 70_000),
    ("worker_health_port", "http"),
    ("unroutable", "ignore"),
    ("unroutable", None),
    ("signing_key", 5),
    ("signing_key", SECRET[:10]),
    ("signing_key", SECRET.encode() * 2),
    ("verification_keys", 5),
    ("verification_keys", [SECRET[:10]]),
    ("verification_keys", [5]),
    ("context_ttl", 0),
    ("context_ttl", "soon"),
    ("queued_context_ttl", -1),
    ("max_deadline", math.inf),
    ("require_signed_context", "maybe"),
    ("require_signed_context", None),
    ("propagate_error", 2),
    ("response_timeout", -1),
    ("response_timeout", None),
    ("connect_timeout", "fast"),
    ("retry", 3),
    ("retry", {"total": 2}),
    ("max_response_size", 0),
    ("max_response_size", 1.5),
    ("max_response_size", "big"),
    ("pool_maxsize", 0),
    ("pool_maxsize", 1.5),
    ("trust_env", "perhaps"),
    ("sync_transport", "pycurl"),
    ("sync_transport", 3),
    ("aio_transport", "requests"),
    ("sync_transports", ["user"]),
    ("sync_transports", {"user": "httpx"}),
    ("aio_transports", {"User": "aiohttp"}),
    ("aio_transports", {"user": None}),
    ("circuit_breaker", None),
    ("circuit_breakers", 5),
    ("circuit_breakers", {"user": 5}),
    ("circuit_breakers", {"User": svclink.BreakerPolicy()}),
    ("retry_budget", 0.2),
    ("observers", 5),
    ("observers", [object()]),
    ("tls_ca_file", 5),
    ("tls_ca_file", "/nowhere/ca.pem"),  # read at configure time
    ("tls_client_cert", "/nowhere/client.pem"),
    ("tls_client_cert", ["a.pem"]),
    ("tls_client_key", "/etc/key.pem"),  # without a certificate
    ("tls_key_password", SECRET),  # without a certificate, and never echoed
    ("tls_verify", "perhaps"),
    ("tls_verify", None),
    ("tls_server_hostname", "user internal"),
    ("service_tls", 5),
    ("service_tls", {"user": {"ca_file": 5}}),
    ("service_tls", {"user": {"verify": "maybe"}}),
    ("service_tls", {"user": {"password": SECRET}}),
    ("service_tls", {"billing": {"ca_file": "/x.pem"}}),  # not a declared service
    ("tls_client_subject_header", "X-Client Subject"),
    ("tls_client_subject_header", "X-SSL-Client-S-DN"),  # without tls_trusted_proxies
    ("tls_trusted_proxies", ["10.0.0.1/8"]),  # host bits set
    ("tls_trusted_proxies", "proxy.internal"),
    ("tls_trusted_proxies", 5),
    ("event_formats", {"user_events": "xml"}),
    ("event_formats", 5),
    ("inbox_retention", -1),
    ("insanic_headers", "maybe"),
    ("outbox_poll_interval", 0),
    ("outbox_retention", "soon"),
    ("outbox_send_after_commit", "maybe"),
    ("transient_exchanges", ["bad name!"]),
    ("no_such_setting", 1),
]


def test_the_bad_settings_cover_every_field() -> None:
    assert {f for f, _ in BAD_SETTINGS} >= FIELDS


@pytest.mark.parametrize(
    ("field", "value"), BAD_SETTINGS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_SETTINGS)]
)
def test_configure_refuses_a_bad_value_naming_the_field(field: str, value: Any) -> None:
    values = {field: value}
    if field in NEEDS_CONNECTIONS:
        values["service_connections"] = ["user"]
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure(**values)
    refused(info.value, field=field)
    assert svclink.core.settings.installed() is None  # nothing half-configured stays behind


BAD_ENV: list[tuple[str, str, str]] = [
    ("SVCLINK_SERVICE_NAME", "Bad Name", "service_name"),
    ("SVCLINK_SERVICE_CONNECTIONS", "user,User!", "service_connections"),
    ("SVCLINK_REQUIRED_SERVICE_CONNECTIONS", "billing", "required_service_connections"),
    ("SVCLINK_HOST_PATTERN", "http://no-placeholder", "host_pattern"),
    ("SVCLINK_SERVICE_USER_URL", f"ftp://admin:{SECRET}@user", "service_hosts"),
    ("SVCLINK_AMQP_URL", f"amqp://guest:{SECRET}@rabbit:port/", "amqp_url"),
    ("SVCLINK_EVENT_EXCHANGE", "amq.topic", "event_exchange"),
    ("SVCLINK_PUBLISH_TIMEOUT", "soon", "publish_timeout"),
    ("SVCLINK_MAX_MESSAGE_SIZE", "-1", "max_message_size"),
    ("SVCLINK_AMQP_HEARTBEAT", "-1", "amqp_heartbeat"),
    ("SVCLINK_PREFETCH_COUNT", "0", "prefetch_count"),
    ("SVCLINK_CONSUMER_CONCURRENCY", "many", "consumer_concurrency"),
    ("SVCLINK_CONSUMER_GRACE", "0", "consumer_grace"),
    ("SVCLINK_HANDLER_TIMEOUT", "forever", "handler_timeout"),
    ("SVCLINK_WORKER_HEALTH_PORT", "-1", "worker_health_port"),
    ("SVCLINK_UNROUTABLE", "drop", "unroutable"),
    ("SVCLINK_SIGNING_KEY", SECRET[:10], "signing_key"),
    ("SVCLINK_VERIFICATION_KEYS", f"{'k' * 20},{SECRET[:8]}", "verification_keys"),
    ("SVCLINK_CONTEXT_TTL", "0", "context_ttl"),
    ("SVCLINK_QUEUED_CONTEXT_TTL", "-5", "queued_context_ttl"),
    ("SVCLINK_MAX_DEADLINE", "inf", "max_deadline"),
    ("SVCLINK_REQUIRE_SIGNED_CONTEXT", "maybe", "require_signed_context"),
    ("SVCLINK_PROPAGATE_ERROR", "perhaps", "propagate_error"),
    ("SVCLINK_RESPONSE_TIMEOUT", "nan", "response_timeout"),
    ("SVCLINK_CONNECT_TIMEOUT", "0", "connect_timeout"),
    ("SVCLINK_POOL_MAXSIZE", "many", "pool_maxsize"),
    ("SVCLINK_MAX_RESPONSE_SIZE", "0", "max_response_size"),
    ("SVCLINK_TRUST_ENV", "2", "trust_env"),
    ("SVCLINK_SYNC_TRANSPORT", "pycurl", "sync_transport"),
    ("SVCLINK_AIO_TRANSPORT", "requests", "aio_transport"),
    ("SVCLINK_RETRY_COUNT", "-1", "retry_count"),
    ("SVCLINK_TLS_CA_FILE", "/nowhere/ca.pem", "tls_ca_file"),
    ("SVCLINK_TLS_CLIENT_CERT", "/nowhere/client.pem", "tls_client_cert"),
    ("SVCLINK_TLS_CLIENT_KEY", "/etc/client.key", "tls_client_key"),
    ("SVCLINK_TLS_KEY_PASSWORD", SECRET, "tls_key_password"),
    ("SVCLINK_TLS_VERIFY", "sometimes", "tls_verify"),
    ("SVCLINK_TLS_SERVER_HOSTNAME", "a b", "tls_server_hostname"),
    ("SVCLINK_SERVICE_USER_TLS_VERIFY", "maybe", "service_tls"),
    ("SVCLINK_TLS_CLIENT_SUBJECT_HEADER", "bad header", "tls_client_subject_header"),
    ("SVCLINK_TLS_TRUSTED_PROXIES", "127.0.0.1,not-an-address", "tls_trusted_proxies"),
    ("SVCLINK_EVENT_FORMATS", "user_events=xml", "event_formats"),
    ("SVCLINK_INBOX_RETENTION", "-1", "inbox_retention"),
    ("SVCLINK_INSANIC_HEADERS", "maybe", "insanic_headers"),
    ("SVCLINK_OUTBOX_POLL_INTERVAL", "-1", "outbox_poll_interval"),
    ("SVCLINK_OUTBOX_RETENTION", "-1", "outbox_retention"),
    ("SVCLINK_OUTBOX_SEND_AFTER_COMMIT", "maybe", "outbox_send_after_commit"),
    ("SVCLINK_TRANSIENT_EXCHANGES", "bad name!", "transient_exchanges"),
]


def test_the_bad_environment_covers_every_variable() -> None:
    assert {f for _, _, f in BAD_ENV} >= (FIELDS - _NOT_FROM_ENV) | {"retry_count", "service_hosts"}


@pytest.mark.parametrize(("name", "value", "field"), BAD_ENV, ids=[n for n, _, _ in BAD_ENV])
def test_a_bad_environment_variable_names_the_field(
    name: str, value: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SVCLINK_SERVICE_CONNECTIONS", "user")
    monkeypatch.setenv(name, value)
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.configure()
    refused(info.value, field=field)
    # the lazy path (first use without configure) refuses it the same way
    with pytest.raises(svclink.ConfigurationError) as info:
        svclink.sync.get_service("user")
    refused(info.value, field=field)


# -- HTTP calls ------------------------------------------------------------------------

deep_list: list[Any] = []
_node = deep_list
for _ in range(5000):
    _node.append([])
    _node = _node[0]
circular: dict[str, Any] = {}
circular["self"] = circular

BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    # (id, arguments, words the message must contain)
    ("method-int", {"method": 5}, "method"),
    ("method-bytes", {"method": b"GET"}, "method"),
    ("method-none", {"method": None}, "method"),
    ("endpoint-bytes", {"endpoint": b"/x"}, "endpoint"),
    ("endpoint-none", {"endpoint": None}, "endpoint"),
    ("endpoint-empty", {"endpoint": ""}, "endpoint"),
    ("endpoint-non-ascii", {"endpoint": "/é"}, "endpoint"),
    ("path-params-list", {"endpoint": "/{id}", "path_params": [("id", 1)]}, "path_params"),
    ("path-params-str", {"endpoint": "/{id}", "path_params": "id"}, "path_params"),
    ("path-param-bool", {"endpoint": "/{id}", "path_params": {"id": True}}, "'id'"),
    ("path-param-none", {"endpoint": "/{id}", "path_params": {"id": None}}, "'id'"),
    ("path-param-surrogate", {"endpoint": "/{id}", "path_params": {"id": SECRET + "\ud800"}}, "'id'"),
    ("query-str", {"query_params": f"token={SECRET}"}, "query_params"),
    ("query-list", {"query_params": [("token", SECRET)]}, "query_params"),
    ("query-name-int", {"query_params": {5: "x"}}, "names"),
    ("query-name-empty", {"query_params": {"": "x"}}, "names"),
    ("query-value-bytes", {"query_params": {"token": SECRET.encode()}}, "'token'"),
    ("query-value-surrogate", {"query_params": {"token": SECRET + "\ud800"}}, "'token'"),
    ("query-name-surrogate", {"query_params": {"\ud800": "x"}}, "name"),
    ("payload-object", {"payload": {"x": object()}}, "JSON"),
    ("payload-bytes", {"payload": SECRET.encode()}, "JSON"),
    ("payload-inf", {"payload": {"x": math.inf}}, "JSON"),
    ("payload-complex-key", {"payload": {1j: 1}}, "JSON"),
    ("payload-circular", {"payload": circular}, "JSON"),
    ("payload-deep", {"payload": deep_list}, "nested"),
    ("payload-surrogate", {"payload": {"x": "\ud800"}}, "JSON"),
    ("files-list", {"files": [("f", b"x")]}, "files"),
    ("files-short-tuple", {"files": {"f": ("a.txt",)}}, "file"),
    ("files-name-int", {"files": {"f": (5, b"x")}}, "file"),
    ("files-type-crlf", {"files": {"f": ("a.txt", b"x", "text/plain\r\nX-Evil: 1")}}, "Content-Type"),
    ("files-filename-crlf", {"files": {"f": ("a.txt\r\nX-Evil: 1", b"x")}}, "file name"),
    ("files-field-crlf", {"files": {"f\r\nX-Evil: 1": b"x"}}, "field name"),
    ("files-form-not-mapping", {"files": {"f": b"x"}, "payload": [1, 2]}, "payload"),
    ("files-form-nested", {"files": {"f": b"x"}, "payload": {"a": {"b": 1}}}, "form"),
    ("files-form-none", {"files": {"f": b"x"}, "payload": {"a": None}}, "form"),
    ("files-form-surrogate", {"files": {"f": b"x"}, "payload": {"a": "\ud800"}}, "form field value"),
    ("headers-list", {"headers": [("Authorization", f"Bearer {SECRET}")]}, "headers"),
    ("headers-str", {"headers": f"Authorization: Bearer {SECRET}"}, "headers"),
    ("headers-name-int", {"headers": {5: "x"}}, "header name"),
    ("headers-name-empty", {"headers": {"": SECRET}}, "header name"),
    ("headers-value-bytes", {"headers": {"Authorization": SECRET.encode()}}, "'Authorization'"),
    ("headers-value-non-ascii", {"headers": {"Authorization": f"Bearer {SECRET}é"}}, "ASCII"),
    ("timeout-negative", {"response_timeout": -1}, "response_timeout"),
    ("timeout-nan", {"response_timeout": math.nan}, "response_timeout"),
    ("timeout-inf", {"response_timeout": math.inf}, "response_timeout"),
    ("timeout-str", {"response_timeout": "5"}, "response_timeout"),
    ("timeout-bool", {"response_timeout": True}, "response_timeout"),
    ("retry-count-bool", {"retry_count": True}, "retry_count"),
    ("retry-count-float", {"retry_count": 1.5}, "retry_count"),
    ("retry-count-str", {"retry_count": "2"}, "retry_count"),
    ("key-int", {"idempotency_key": 5}, "idempotency_key"),
    ("key-bytes", {"idempotency_key": SECRET.encode()}, "idempotency_key"),
    ("key-crlf", {"idempotency_key": f"{SECRET}\r\nX-Evil: 1"}, "Idempotency-Key"),
    ("key-non-ascii", {"idempotency_key": f"{SECRET}é"}, "Idempotency-Key"),
]


@pytest.mark.parametrize(("kwargs", "says"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_a_bad_call_is_refused_before_any_io(
    side: Side, user_service: TestServer, kwargs: dict[str, Any], says: str
) -> None:
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "POST")
    endpoint = kwargs.pop("endpoint", "/x")
    with pytest.raises(svclink.InvalidRequest) as info:
        side.call("user", method, endpoint, **kwargs)
    assert says in refused(info.value)
    assert user_service.requests == []


def test_a_payload_over_the_limit_is_refused_before_any_io(side: Side, user_service: TestServer) -> None:
    limit = service_module.MAX_PAYLOAD_BYTES
    with pytest.raises(svclink.InvalidRequest) as info:
        side.call("user", "POST", "/x", payload={"blob": "x" * limit})
    assert "over the limit" in refused(info.value) and str(limit) in str(info.value)
    assert user_service.requests == []
    # exactly at the limit goes through: the limit is the size of the JSON sent

    def size(rec: Recorded) -> Reply:
        return Reply(200, {"n": len(rec.body)})

    user_service.route("POST", "/x", size)
    assert side.call("user", "POST", "/x", payload="y" * (limit - 2)) == {"n": limit}


def test_an_undeclared_or_non_str_service_name_is_refused(side: Side, user_service: TestServer) -> None:
    for name in ("billing", "", 5):
        with pytest.raises(svclink.ServiceNotDeclared):
            side.call(name, "GET", "/x")  # type: ignore[arg-type]
    assert user_service.requests == []


# -- publishing ------------------------------------------------------------------------


def _nothing_published(env: EventEnv, sink: str) -> None:
    """The sink bound to every key of the exchange is empty, though a good event does land in it."""
    assert env.broker.count(sink) == 0
    env.publish("probe.ok", {"ok": True})
    eventually(lambda: env.broker.count(sink) == 1, what="the probe in the sink")


def _publish_refused(env: EventEnv, event_type: Any, data: Any = None, **kwargs: Any) -> str:
    kwargs.setdefault("exchange", env.exchange)
    with pytest.raises(svclink.InvalidEvent) as info:
        env.pub.publish(event_type, {"ok": 1} if data is None else data, **kwargs)
    return refused(info.value)


BAD_EVENT_TYPES: list[Any] = [
    "",
    "user.*",
    "*",
    "#",
    "user.#",
    "*.updated",
    "user..updated",
    ".user",
    "user.",
    "x" * 256,
    "é" * 128,  # 256 bytes in UTF-8
    "user\nupdated",
    "user.\x00",
    5,
    None,
    b"user.updated",
    ["user.updated"],
]


def test_publish_refuses_bad_event_types(env: EventEnv) -> None:
    sink = env.sink(["#"])
    for event_type in BAD_EVENT_TYPES:
        assert "event type" in _publish_refused(env, event_type), event_type
    _nothing_published(env, sink)


def test_publish_refuses_data_that_is_not_json(env: EventEnv) -> None:
    sink = env.sink(["#"])
    nested: list[Any] = []
    node = nested
    for _ in range(MAX_DEPTH + 5):
        node.append([])
        node = node[0]
    for data in (
        object(),
        {"x": math.nan},
        {"x": -math.inf},
        {1: "int key"},
        {"x": {1, 2}},
        {"x": SECRET.encode()},
        circular,
        deep_list,
        nested,
        {"x": "\ud800"},
    ):
        text = _publish_refused(env, "user.updated", data)
        assert "event data" in text, text
    _nothing_published(env, sink)


def test_publish_refuses_bad_exchanges_ids_and_headers(env: EventEnv) -> None:
    sink = env.sink(["#"])
    for exchange in ("", "amq.topic", "x" * 256, "ex\nchange", 5):
        assert "exchange" in _publish_refused(env, "user.updated", exchange=exchange)
    for event_id in ("", "x" * 256, "id\r\n", 5):
        assert "event_id" in _publish_refused(env, "user.updated", event_id=event_id)
    for headers in (5, [("x-a", "b")], {5: "x"}, {"": "x"}, {"x-a": object()}, {"x-a": [math.nan]}):
        assert "header" in _publish_refused(env, "user.updated", headers=headers)
    if env.broker.kind == "memory":
        broker = svclink.testing.get_broker()
        assert not broker.exchange_exists("amq.topic")
    _nothing_published(env, sink)


def test_publish_refuses_a_bad_timeout(env: EventEnv) -> None:
    """A positive, finite number of seconds or None; the same refusal on both sides, before any I/O."""
    sink = env.sink(["#"])
    for timeout in ("5", -1, 0, 0.0, math.nan, math.inf, -math.inf, True, [5]):
        assert "timeout" in _publish_refused(env, "user.updated", timeout=timeout), timeout
        with pytest.raises(svclink.InvalidEvent, match="timeout"):
            env.pub.publish_many([("user.updated", {"ok": 1})], exchange=env.exchange, timeout=timeout)
    _nothing_published(env, sink)


def test_publish_many_refuses_what_is_not_a_list_of_pairs(env: EventEnv) -> None:
    sink = env.sink(["#"])
    for events in ("user.updated", 5, {"user.updated": {}}, [("user.updated",)], ["user.updated"]):
        with pytest.raises(svclink.InvalidEvent, match=r"\(event_type, data\) pairs"):
            env.pub.publish_many(events, exchange=env.exchange)
    _nothing_published(env, sink)


def test_publish_many_refuses_the_whole_batch_for_one_bad_event(env: EventEnv) -> None:
    sink = env.sink(["#"])
    with pytest.raises(svclink.InvalidEvent):
        env.pub.publish_many([("user.created", {"id": 1}), ("user.*", {"id": 2})], exchange=env.exchange)
    _nothing_published(env, sink)


# -- consumers -------------------------------------------------------------------------


@pytest.fixture
def memory() -> Iterator[svclink.Settings]:
    yield svclink.configure(service_name="api", amqp_url="memory://")
    svclink.testing.reset()


def _module(side: Side) -> Any:
    return svclink.sync if side.name == "sync" else svclink.aio


def _handler(side: Side) -> Any:
    return (lambda event: None) if side.name == "sync" else _async_handler


BAD_CONSUMERS: list[tuple[str, dict[str, Any], str]] = [
    ("queue-empty", {"queue": ""}, "queue"),
    ("queue-int", {"queue": 5}, "queue"),
    ("queue-amq", {"queue": "amq.q"}, "queue"),
    ("queue-long", {"queue": "q" * 250}, "queue"),
    ("queue-newline", {"queue": "q\nq"}, "queue"),
    ("exchange-empty", {"exchange": ""}, "exchange"),
    ("exchange-int", {"exchange": 5}, "exchange"),
    ("exchange-amq", {"exchange": "amq.topic"}, "exchange"),
    ("binding-int", {"bindings": [5]}, "binding"),
    ("binding-newline", {"bindings": ["user.\n"]}, "binding"),
    ("binding-long", {"bindings": ["x" * 300]}, "binding"),
    ("attempts-zero", {"max_attempts": 0}, "max_attempts"),
    ("attempts-bool", {"max_attempts": True}, "max_attempts"),
    ("attempts-str", {"max_attempts": "3"}, "max_attempts"),
    ("attempts-float", {"max_attempts": 2.5}, "max_attempts"),
    ("attempts-huge", {"max_attempts": 10**6}, "max_attempts"),
    ("delays-negative", {"retry_delays": [-1]}, "retry_delays"),
    ("delays-nan", {"retry_delays": [math.nan]}, "retry_delays"),
    ("delays-str", {"retry_delays": "abc"}, "retry_delays"),
    ("delays-bool", {"retry_delays": [True]}, "retry_delays"),
    ("delays-huge", {"retry_delays": [10**9]}, "retry_delays"),
    ("delays-empty-with-retries", {"retry_delays": [], "max_attempts": 3}, "retry_delays"),
    ("prefetch-zero", {"prefetch": 0}, "prefetch"),
    ("prefetch-huge", {"prefetch": 70_000}, "prefetch"),
    ("queue-type", {"queue_type": "stream"}, "queue_type"),
]


@pytest.mark.parametrize(
    ("kwargs", "says"), [c[1:] for c in BAD_CONSUMERS], ids=[c[0] for c in BAD_CONSUMERS]
)
def test_a_bad_consumer_is_refused_before_any_io(
    side: Side, memory: svclink.Settings, kwargs: dict[str, Any], says: str
) -> None:
    kwargs = dict(kwargs)
    queue = kwargs.pop("queue", "bad.input.q")
    with pytest.raises(svclink.InvalidEvent) as info:
        _module(side).EventConsumer(queue, **kwargs)
    assert says in refused(info.value)
    assert not svclink.testing.get_broker().queue_exists(str(queue))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        pytest.param({"bindings": "user.*"}, "bindings", id="bindings-one-string"),
        pytest.param({"bindings": b"user.*"}, "bindings", id="bindings-bytes"),
        pytest.param({"bindings": 5}, "bindings", id="bindings-int"),
        pytest.param({"bindings": None, "retry_delays": 5}, "retry_delays", id="delays-int"),
        pytest.param({"retry_delays": "1"}, "retry_delays", id="delays-one-string"),
    ],
)
def test_a_consumer_given_a_scalar_for_a_list_is_refused(
    side: Side, memory: svclink.Settings, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(svclink.InvalidEvent) as info:
        _module(side).EventConsumer("bad.input.q", **kwargs)
    assert says in refused(info.value)
    assert not svclink.testing.get_broker().queue_exists("bad.input.q")


def test_on_refuses_bad_patterns_and_duplicates(side: Side, memory: svclink.Settings) -> None:
    consumer = _module(side).EventConsumer("bad.input.q")
    handler = _handler(side)
    for pattern in (5, None, "", "user.\n", "x" * 300):
        with pytest.raises(svclink.InvalidEvent) as info:
            consumer.on(pattern)(handler)
        assert "pattern" in refused(info.value)
    consumer.on("user.updated")(handler)
    consumer.on("user.*")(handler)
    consumer.default(handler)
    for pattern in ("user.updated", "user.*", "#"):
        with pytest.raises(svclink.InvalidEvent, match="already registered"):
            consumer.on(pattern)(handler)
    assert not svclink.testing.get_broker().queue_exists("bad.input.q")


async def _async_handler(event: Any) -> None:
    return None


async def _async_generator(event: Any) -> Any:
    yield event


class _AsyncCallable:
    async def __call__(self, event: Any) -> None:
        return None


def test_a_handler_of_the_other_side_is_refused(side: Side, memory: svclink.Settings) -> None:
    """A TypeError that says what to do instead: use the other side, or change the handler."""
    consumer = _module(side).EventConsumer("bad.input.q")
    other = [_async_handler, _async_generator, _AsyncCallable()] if side.name == "sync" else [lambda e: None]
    fix = "svclink.aio" if side.name == "sync" else "svclink.sync"
    for handler in other:
        with pytest.raises(TypeError, match="async def") as info:
            consumer.on("user.updated")(handler)
        assert fix in str(info.value)
        with pytest.raises(TypeError, match="async def"):
            consumer.default(handler)
    consumer.on("user.updated")(_handler(side))  # nothing refused was registered
    consumer.default(_handler(side))
    if side.name == "aio":
        consumer.on("user.created")(_AsyncCallable())  # an object with an async __call__ is awaited


@pytest.mark.parametrize("handler", [5, None, "handle", object()], ids=["int", "none", "str", "object"])
def test_a_handler_that_is_not_callable_is_refused(
    side: Side, memory: svclink.Settings, handler: Any
) -> None:
    consumer = _module(side).EventConsumer("bad.input.q")
    with pytest.raises(TypeError, match="must be a function"):
        consumer.on("user.updated")(handler)
    with pytest.raises(TypeError, match="must be a function"):
        consumer.default(handler)
    consumer.on("user.updated")(_handler(side))  # nothing refused was registered
    consumer.default(_handler(side))


def test_run_without_handlers_fails_before_connecting(side: Side, memory: svclink.Settings) -> None:
    consumer = _module(side).EventConsumer("bad.input.q")
    with pytest.raises(svclink.EventError, match="no handlers"):
        if side.name == "sync":
            consumer.run()
        else:
            side.runner.run(consumer.run())  # type: ignore[union-attr]
    assert not svclink.testing.get_broker().queue_exists("bad.input.q")


# -- event types, patterns and routing: properties ---------------------------------------


def reference_match(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """RabbitMQ's topic rule, written the obvious recursive way: '*' is one word, '#' any number."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference_match(rest, key) or (bool(key) and reference_match(pattern, key[1:]))
    if not key:
        return False
    return (head == "*" or head == key[0]) and reference_match(rest, key[1:])


def _words(key: str) -> tuple[str, ...]:
    return tuple(key.split(".")) if key else ()


WORD = st.sampled_from(["a", "b", "ab", "", "*", "#", "a*", "#b", "é"])
PATTERN = st.lists(WORD, max_size=7).map(".".join)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_an_accepted_event_type_has_only_plain_non_empty_words(text: str) -> None:
    try:
        accepted = topics.check_event_type(text)
    except svclink.InvalidEvent:
        return
    words = accepted.split(".")
    assert all(words) and "*" not in words and "#" not in words
    assert len(accepted.encode("utf-8")) <= 255
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in accepted)


@given(PATTERN)
def test_event_types_made_of_wildcards_or_empty_words_are_refused(key: str) -> None:
    words = key.split(".")
    if not key or any(w in ("", "*", "#") for w in words):
        with pytest.raises(svclink.InvalidEvent):
            topics.check_event_type(key)
    else:
        assert topics.check_event_type(key) == key
        assert topics.matches(key, key) and topics.matches("#", key)
        assert topics.matches(".".join("*" for _ in words), key)


@given(PATTERN, PATTERN)
@settings(max_examples=500)
def test_topic_matching_agrees_with_the_recursive_reference(pattern: str, key: str) -> None:
    assert topics.matches(pattern, key) is reference_match(_words(pattern), _words(key))


@given(st.lists(PATTERN, min_size=1, max_size=4, unique=True), PATTERN)
def test_handler_dispatch_agrees_with_matching(patterns: list[str], key: str) -> None:
    table: HandlerTable[str] = HandlerTable()
    for pattern in patterns:
        if pattern:
            table.add(pattern, pattern)
    found = table.find(key)
    expected = [p for p in patterns if p and reference_match(_words(p), _words(key))]
    assert (found is None) == (expected == [])
    assert found is None or found in expected
    if key in expected and not topics.is_pattern(key):
        assert found == key  # an exact type wins over any pattern


@given(PATTERN, PATTERN)
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_memory_broker_routes_like_the_reference(pattern: str, key: str) -> None:
    broker = svclink.testing.MemoryBroker("bad-input-routing")
    connection = broker.connect("test")
    broker.declare_exchange(connection, "ex", "topic")
    broker.declare_queue(connection, "q")
    broker.bind_queue(connection, "q", "ex", pattern)
    message = OutgoingMessage("ex", key, b"{}", Properties(), mandatory=True)
    outcome = broker.publish(connection, message).wait(1.0)
    routed = reference_match(_words(pattern), _words(key))
    assert outcome == ("ack" if routed else "returned")
    assert broker.message_count("q") == (1 if routed else 0)
    connection.close()
