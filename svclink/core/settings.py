"""Settings: one frozen, validated value, loaded from keyword arguments and the environment.

Everything is checked when the value is built, so a typo in a host URL fails at start-up
with the field named, not on the first call at three in the morning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import attrs

from . import durations, fleet_settings, tls
from .context.peer import Network, check_proxy_settings, subject_header, trusted_proxies
from .errors import ConfigurationError
from .http.transports import AIO_TRANSPORTS, SYNC_TRANSPORTS, check_transport
from .observe import Observer
from .policy.breaker import BreakerPolicy
from .policy.budget import BudgetPolicy
from .policy.retry import RetryPolicy
from .tls import ServiceTLS

ENV_PREFIX = "SVCLINK_"
SERVICE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_FALSE = frozenset({"0", "false", "no", "off", ""})
_TRUE = frozenset({"1", "true", "yes", "on"})
_UNSAFE_URL_RE = re.compile(r"[\x00-\x20\x7f]")


def check_service_name(field: str, name: object) -> str:
    """A service name is a lower-case DNS label (underscores allowed)."""
    if not isinstance(name, str) or not SERVICE_NAME_RE.fullmatch(name):  # "$" allows a final \n
        raise ConfigurationError(
            field, f"{name!r} is not a service name (lower-case letters, digits, '-', '_')"
        )
    return name


def check_base_url(field: str, url: object) -> str:
    """An http(s) URL with a host and no query, fragment or credentials; trailing '/' dropped."""
    if not isinstance(url, str):
        raise ConfigurationError(field, f"must be a URL string, got {type(url).__name__}")
    if _UNSAFE_URL_RE.search(url):  # urlsplit silently drops tabs and newlines; refuse them instead
        raise ConfigurationError(field, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise ConfigurationError(field, "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(field, "must start with http:// or https://")
    if not parts.hostname:
        raise ConfigurationError(field, "has no host")
    if parts.query or parts.fragment:
        raise ConfigurationError(field, "must not have a query string or fragment")
    if parts.username or parts.password:
        raise ConfigurationError(field, "must not carry credentials")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ConfigurationError(field, "has an invalid port") from None
    return url.rstrip("/")


def _names(field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise ConfigurationError(field, f"must be a list of service names, got {value!r}")
    names = tuple(check_service_name(field, n) for n in value)
    if len(set(names)) != len(names):
        raise ConfigurationError(field, "lists a service twice")
    return names


def _check_amqp_url(url: object) -> None:
    """An amqp(s):// URL with a host and a valid port, or memory://; never echoed (it has a password)."""
    if not isinstance(url, str):
        raise ConfigurationError("amqp_url", "must be a URL or a list of URLs")
    if _UNSAFE_URL_RE.search(url):
        raise ConfigurationError("amqp_url", "must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number or out of range
        raise ConfigurationError("amqp_url", "is not a valid URL (check the host and port)") from None
    if parts.scheme not in ("amqp", "amqps", "memory"):
        raise ConfigurationError("amqp_url", "must start with amqp://, amqps:// or memory://")
    if parts.scheme != "memory" and not parts.hostname:
        raise ConfigurationError("amqp_url", "has no host")


def _amqp_urls(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise ConfigurationError("amqp_url", "must be a URL or a list of URLs")
    urls = tuple(value)
    if not urls:
        raise ConfigurationError("amqp_url", "must not be empty")
    for url in urls:
        _check_amqp_url(url)
    if len(urls) > 1 and any(u.startswith("memory:") for u in urls):
        raise ConfigurationError("amqp_url", "memory:// cannot be part of a list")
    return urls


def _hosts(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("service_hosts", "must be a mapping of service name to URL")
    return MappingProxyType(
        {
            check_service_name("service_hosts", k): check_base_url(f"service_hosts[{k!r}]", v)
            for k, v in value.items()
        }
    )


def _host_pattern(value: object) -> str:
    if not isinstance(value, str) or "{service}" not in value:
        raise ConfigurationError("host_pattern", "must be a URL containing '{service}'")
    try:
        sample = value.format(service="x")
    except (KeyError, IndexError, ValueError):
        raise ConfigurationError("host_pattern", "may contain no placeholder but {service}") from None
    check_base_url("host_pattern", sample)
    return value


#: shorter keys are refused: HMAC is only as strong as its key
MIN_KEY_LENGTH = 16


def _key(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(field, "must be a string")
    if len(value) < MIN_KEY_LENGTH:
        raise ConfigurationError(field, f"must be at least {MIN_KEY_LENGTH} characters long")
    return value


def _secret(value: object) -> str | None:
    if value is None or value == "":
        return None
    return _key("signing_key", value)


def _verification_keys(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise ConfigurationError("verification_keys", "must be a list of keys")
    return tuple(_key("verification_keys", v) for v in value)


def _context_ttl(value: object) -> float:
    return _seconds("context_ttl", value)


def _queued_context_ttl(value: object) -> float:
    return _seconds("queued_context_ttl", value)


def _max_deadline(value: object) -> float:
    return _seconds("max_deadline", value)


def _require_signed_context(value: object) -> bool:
    return _bool("require_signed_context", value)


def _bool(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(field, f"must be true or false, got {value!r}")


def _seconds(field: str, value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(field, f"must be a number, got {value!r}") from None
    checked = durations.seconds(value)
    if checked is None:
        shown = "a huge negative int" if isinstance(value, int) and value.bit_length() > 64 else repr(value)
        raise ConfigurationError(field, f"must be a positive number of seconds, got {shown}")
    return checked


def _seconds_or_zero(field: str, value: object) -> float:
    """A number of seconds where 0 means "not at all" (kept for no time, say)."""
    if value == 0 or value == "0":
        return 0.0
    return _seconds(field, value)


def _outbox_poll_interval(value: object) -> float:
    return _seconds("outbox_poll_interval", value)


def _outbox_retention(value: object) -> float:
    return _seconds_or_zero("outbox_retention", value)


def _outbox_send_after_commit(value: object) -> bool:
    return _bool("outbox_send_after_commit", value)


def _inbox_retention(value: object) -> float:
    return _seconds("inbox_retention", value)


def _count(field: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(field, f"must be a whole number >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(field, f"must be at most {maximum}, got {value!r}")
    return value


def _connections(value: object) -> tuple[str, ...]:
    return _names("service_connections", value)


def _required(value: object) -> tuple[str, ...]:
    return _names("required_service_connections", value)


def _propagate_error(value: object) -> bool:
    return _bool("propagate_error", value)


def _trust_env(value: object) -> bool:
    return _bool("trust_env", value)


def _response_timeout(value: object) -> float:
    return _seconds("response_timeout", value)


def _connect_timeout(value: object) -> float:
    return _seconds("connect_timeout", value)


def _pool_maxsize(value: object) -> int:
    return _count("pool_maxsize", value, minimum=1)


#: the default bound on a response body (bytes kept in memory after decompression)
MAX_RESPONSE_SIZE = 100 * 1024 * 1024


def _max_response_size(value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None  # no bound
    return _count("max_response_size", value, minimum=1)


def _insanic_headers(value: object) -> bool:
    return _bool("insanic_headers", value)


def _sync_transport(value: object) -> str:
    return check_transport("sync_transport", value, SYNC_TRANSPORTS)


def _aio_transport(value: object) -> str:
    return check_transport("aio_transport", value, AIO_TRANSPORTS)


def _transport_map(field: str, value: object, known: tuple[str, ...]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(field, f"must map service names to one of {', '.join(known)}")
    return MappingProxyType(
        {check_service_name(field, k): check_transport(f"{field}[{k!r}]", v, known) for k, v in value.items()}
    )


def _sync_transports(value: object) -> Mapping[str, str]:
    return _transport_map("sync_transports", value, SYNC_TRANSPORTS)


def _aio_transports(value: object) -> Mapping[str, str]:
    return _transport_map("aio_transports", value, AIO_TRANSPORTS)


def _event_exchange(value: object) -> str:
    if (
        not isinstance(value, str)
        or not re.match(r"^[A-Za-z0-9_.:-]{1,200}$", value)
        or value.startswith("amq.")
    ):
        raise ConfigurationError(
            "event_exchange", "must be an exchange name (letters, digits, '_.:-'), not amq.*"
        )
    return value


def _publish_timeout(value: object) -> float:
    return _seconds("publish_timeout", value)


def _amqp_heartbeat(value: object) -> int:
    return _count("amqp_heartbeat", value, maximum=65535)  # AMQP carries it in 16 bits


def _prefetch_count(value: object) -> int:
    return _count("prefetch_count", value, minimum=1, maximum=65535)  # AMQP carries it in 16 bits


def _consumer_concurrency(value: object) -> int | None:
    if value is None or value == "":
        return None
    return _count("consumer_concurrency", value, minimum=1, maximum=1000)


def _consumer_grace(value: object) -> float:
    return _seconds("consumer_grace", value)


def _handler_timeout(value: object) -> float:
    return _seconds("handler_timeout", value)


def _health_port(value: object) -> int | None:
    if value is None or value == "":
        return None
    return _count("worker_health_port", value, maximum=65535)


UNROUTABLE_CHOICES = ("warn", "raise")


def _unroutable(value: object) -> str:
    if value not in UNROUTABLE_CHOICES:
        raise ConfigurationError("unroutable", f"must be 'warn' or 'raise', got {value!r}")
    return str(value)


def _retry(value: object) -> RetryPolicy:
    if not isinstance(value, RetryPolicy):
        raise ConfigurationError("retry", "must be a svclink.RetryPolicy")
    return value


def _breaker(value: object) -> BreakerPolicy:
    if not isinstance(value, BreakerPolicy):
        raise ConfigurationError("circuit_breaker", "must be a svclink.BreakerPolicy")
    return value


def _breakers(value: object) -> Mapping[str, BreakerPolicy]:
    if not isinstance(value, Mapping) or not all(isinstance(v, BreakerPolicy) for v in value.values()):
        raise ConfigurationError("circuit_breakers", "must map service names to svclink.BreakerPolicy")
    return MappingProxyType({check_service_name("circuit_breakers", k): v for k, v in value.items()})


def _budget(value: object) -> BudgetPolicy:
    if not isinstance(value, BudgetPolicy):
        raise ConfigurationError("retry_budget", "must be a svclink.BudgetPolicy")
    return value


def _service_tls(value: object) -> Mapping[str, ServiceTLS]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("service_tls", "must map service names to TLS settings")
    return MappingProxyType(
        {
            check_service_name("service_tls", k): tls.service_entry(f"service_tls[{k!r}]", v)
            for k, v in value.items()
        }
    )


def _observers(value: object) -> tuple[Observer, ...]:
    items = (value,) if isinstance(value, Observer) else value
    if not isinstance(items, Iterable) or not all(isinstance(o, Observer) for o in items):
        raise ConfigurationError("observers", "must be a list of svclink.Observer instances")
    return tuple(items)


@attrs.frozen(kw_only=True)
class Settings:
    """Everything svclink needs to know, checked once; derive changed copies with ``attrs.evolve``."""

    #: who we are: sent as the caller identity on every call and event
    service_name: str | None = attrs.field(default=None)
    service_connections: tuple[str, ...] = attrs.field(default=(), converter=_connections)
    required_service_connections: tuple[str, ...] = attrs.field(default=(), converter=_required)
    host_pattern: str = attrs.field(default="http://{service}:8000", converter=_host_pattern)
    service_hosts: Mapping[str, str] = attrs.field(factory=dict, converter=_hosts)
    amqp_url: tuple[str, ...] = attrs.field(
        default="amqp://guest:guest@localhost:5672/", converter=_amqp_urls, repr=False
    )
    #: the topic exchange events are published to and consumed from unless one is named
    event_exchange: str = attrs.field(default="svclink.events", converter=_event_exchange)
    #: how long a publish waits for the broker's confirm (and for a blocked broker) before failing
    publish_timeout: float = attrs.field(default=10.0, converter=_publish_timeout)
    #: AMQP heartbeat interval in seconds (0 turns heartbeats off)
    amqp_heartbeat: int = attrs.field(default=30, converter=_amqp_heartbeat)
    #: messages a consumer may hold unacknowledged at once, unless it says otherwise
    prefetch_count: int = attrs.field(default=10, converter=_prefetch_count)
    #: handlers a consumer runs at once, unless it says otherwise (None: one at a time on
    #: svclink.sync, up to the prefetch window on svclink.aio)
    consumer_concurrency: int | None = attrs.field(default=None, converter=_consumer_concurrency)
    #: how long a stopping consumer waits for the handlers in flight (seconds)
    consumer_grace: float = attrs.field(default=30.0, converter=_consumer_grace)
    #: a handler running longer counts as failed (well below RabbitMQ's consumer_timeout of 30 min)
    handler_timeout: float = attrs.field(default=300.0, converter=_handler_timeout)
    #: the port of ``svclink worker``'s /livez and /readyz (None: no health endpoint)
    worker_health_port: int | None = attrs.field(default=None, converter=_health_port)
    #: a publish no queue is bound for: "warn" (logged, returned as not routed) or "raise"
    unroutable: str = attrs.field(default="warn", converter=_unroutable)
    signing_key: str | None = attrs.field(default=None, converter=_secret, repr=False)
    #: keys accepted (besides signing_key) when verifying a signed context: keys being rotated out
    verification_keys: tuple[str, ...] = attrs.field(default=(), converter=_verification_keys, repr=False)
    #: how long a signed context on an HTTP call stays valid (at least the call's own budget)
    context_ttl: float = attrs.field(default=60.0, converter=_context_ttl)
    #: how long a signed context on an event or a Celery task stays valid (they may wait in queues)
    queued_context_ttl: float = attrs.field(default=86400.0, converter=_queued_context_ttl)
    #: an incoming deadline budget (X-Svclink-Deadline-Ms) is clamped to this many seconds
    max_deadline: float = attrs.field(default=60.0, converter=_max_deadline)
    #: refuse (401) an incoming request whose caller context is missing or not verified
    require_signed_context: bool = attrs.field(default=False, converter=_require_signed_context)
    propagate_error: bool = attrs.field(default=True, converter=_propagate_error)
    #: the whole budget of one call, every attempt and wait included (seconds)
    response_timeout: float = attrs.field(default=10.0, converter=_response_timeout)
    connect_timeout: float = attrs.field(default=3.0, converter=_connect_timeout)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy, converter=_retry)
    #: the most bytes of a response body read into memory; a larger one raises ResponseTooLarge
    max_response_size: int | None = attrs.field(default=MAX_RESPONSE_SIZE, converter=_max_response_size)
    #: connections kept per service (sync: per process; aio: per event loop)
    pool_maxsize: int = attrs.field(default=100, converter=_pool_maxsize)
    #: the HTTP library of the sync side ("requests" or "urllib3"), and per-service replacements
    sync_transport: str = attrs.field(default=SYNC_TRANSPORTS[0], converter=_sync_transport)
    sync_transports: Mapping[str, str] = attrs.field(factory=dict, converter=_sync_transports)
    #: the HTTP library of the aio side ("httpx" or "aiohttp"), and per-service replacements
    aio_transport: str = attrs.field(default=AIO_TRANSPORTS[0], converter=_aio_transport)
    aio_transports: Mapping[str, str] = attrs.field(factory=dict, converter=_aio_transports)
    #: honour HTTP(S)_PROXY and .netrc from the environment for internal calls
    trust_env: bool = attrs.field(default=False, converter=_trust_env)
    #: the circuit breaker of every service, and per-service replacements
    circuit_breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy, converter=_breaker)
    circuit_breakers: Mapping[str, BreakerPolicy] = attrs.field(factory=dict, converter=_breakers)
    retry_budget: BudgetPolicy = attrs.field(factory=BudgetPolicy, converter=_budget)
    #: metrics hooks (see :mod:`svclink.core.observe`)
    observers: tuple[Observer, ...] = attrs.field(default=(), converter=_observers)
    #: also send and read Insanic's request-id header (X-Insanic-Request-ID) beside X-Request-ID
    insanic_headers: bool = attrs.field(default=False, converter=_insanic_headers)
    #: the layout of events published to these exchanges (``flat`` or ``envelope``, the default)
    event_formats: Mapping[str, str] = attrs.field(factory=dict, converter=fleet_settings.event_formats)
    #: exchanges svclink declares not durable (as aio-pika and FastStream do), when it declares them first
    transient_exchanges: tuple[str, ...] = attrs.field(
        default=(), converter=fleet_settings.transient_exchanges
    )
    #: seconds between the outbox relay's looks at its table when no wake-up comes
    outbox_poll_interval: float = attrs.field(default=1.0, converter=_outbox_poll_interval)
    #: seconds a sent outbox row is kept (0: deleted as soon as its confirm is in)
    outbox_retention: float = attrs.field(default=0.0, converter=_outbox_retention)
    #: send an outbox event right after its commit (best effort); off, only the relay sends it
    outbox_send_after_commit: bool = attrs.field(default=True, converter=_outbox_send_after_commit)
    #: seconds an inbox row (an event id a deduplicating handler has handled) is kept before pruning
    inbox_retention: float = attrs.field(default=7 * 86400.0, converter=_inbox_retention)
    #: CA certificates (a PEM file, or a directory of them) that HTTPS services and amqps://
    #: brokers are verified against; unset: the system's trust store
    tls_ca_file: str | None = attrs.field(default=None, converter=tls.tls_ca_file)
    #: the client certificate presented (PEM; it may hold the key too) for mutual TLS
    tls_client_cert: str | None = attrs.field(default=None, converter=tls.tls_client_cert)
    #: the client certificate's private key (PEM), when not in ``tls_client_cert``
    tls_client_key: str | None = attrs.field(default=None, converter=tls.tls_client_key)
    #: the password of an encrypted ``tls_client_key``
    tls_key_password: str | None = attrs.field(default=None, converter=tls.tls_key_password, repr=False)
    #: check server certificates (False is for a laboratory only, and says so in the log)
    tls_verify: bool = attrs.field(default=True, converter=tls.tls_verify)
    #: the name server certificates must carry, when connecting by IP address or another name
    tls_server_hostname: str | None = attrs.field(default=None, converter=tls.tls_server_hostname)
    #: per-service TLS settings over the ``tls_*`` ones: ``{"billing": {"ca_file": ...}}``
    service_tls: Mapping[str, ServiceTLS] = attrs.field(factory=dict, converter=_service_tls)
    #: the header a TLS-terminating proxy puts the verified client certificate's subject in
    tls_client_subject_header: str | None = attrs.field(default=None, converter=subject_header)
    #: the proxies (addresses or networks) whose ``tls_client_subject_header`` is believed
    tls_trusted_proxies: tuple[Network, ...] = attrs.field(default=(), converter=trusted_proxies)

    def __attrs_post_init__(self) -> None:
        tls.check_settings(self)
        check_proxy_settings(self.tls_client_subject_header, self.tls_trusted_proxies)

    def breaker_policy(self, service: str) -> BreakerPolicy:
        """The circuit breaker policy of ``service``."""
        return self.circuit_breakers.get(service, self.circuit_breaker)

    def sync_transport_of(self, service: str) -> str:
        """The name of the sync transport that carries calls to ``service``."""
        return self.sync_transports.get(service, self.sync_transport)

    def aio_transport_of(self, service: str) -> str:
        """The name of the aio transport that carries calls to ``service``."""
        return self.aio_transports.get(service, self.aio_transport)

    @service_name.validator
    def _check_service_name(self, attribute: object, value: str | None) -> None:
        if value is not None:
            check_service_name("service_name", value)

    @required_service_connections.validator
    def _check_required(self, attribute: object, value: tuple[str, ...]) -> None:
        missing = [n for n in value if n not in self.service_connections]
        if missing:
            raise ConfigurationError(
                "required_service_connections", f"{', '.join(missing)} not in service_connections"
            )

    @service_hosts.validator
    def _check_hosts(self, attribute: object, value: Mapping[str, str]) -> None:
        extra = [n for n in value if n not in self.service_connections]
        if extra:
            raise ConfigurationError("service_hosts", f"{', '.join(extra)} not in service_connections")

    @service_tls.validator
    def _check_service_tls(self, attribute: object, value: Mapping[str, ServiceTLS]) -> None:
        extra = [n for n in value if n not in self.service_connections]
        if extra:
            raise ConfigurationError("service_tls", f"{', '.join(extra)} not in service_connections")


FIELDS = frozenset(a.name for a in attrs.fields(Settings))
#: fields whose values are objects, set only from Python
_NOT_FROM_ENV = frozenset(
    {
        "service_hosts",
        "sync_transports",
        "aio_transports",
        "retry",
        "circuit_breaker",
        "circuit_breakers",
        "retry_budget",
        "observers",
        "service_tls",
    }
)


def build(values: Mapping[str, Any]) -> Settings:
    """Settings from a mapping, with a :class:`ConfigurationError` for an unknown key."""
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigurationError(unknown[0], f"is not a setting; known: {', '.join(sorted(FIELDS))}")
    try:
        return Settings(**values)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:  # an attrs validator of a nested value
        raise ConfigurationError("settings", str(exc)) from None


def load(values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from explicit ``values`` over ``SVCLINK_*`` environment variables over defaults.

    ``SVCLINK_SERVICE_<NAME>_URL`` overrides the address of declared service ``name``
    (upper-cased, ``-`` written as ``_``) unless ``values`` gives ``service_hosts``.
    """
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = {}
    for name in FIELDS - _NOT_FROM_ENV:
        key = ENV_PREFIX + name.upper()
        if key in env:
            merged[name] = env[key]
    if ENV_PREFIX + "RETRY_COUNT" in env:
        merged["retry"] = RetryPolicy(total=_count("retry_count", env[ENV_PREFIX + "RETRY_COUNT"]))
    merged.update(values)
    if "service_hosts" not in values:
        declared = _names("service_connections", merged.get("service_connections", ()))
        hosts = {}
        for service in declared:
            key = f"{ENV_PREFIX}SERVICE_{service.upper().replace('-', '_')}_URL"
            if key in env:
                hosts[service] = env[key]
        if hosts:
            merged["service_hosts"] = hosts
    if "service_tls" not in values:
        declared = _names("service_connections", merged.get("service_connections", ()))
        tls_env = tls.service_tls_from_env(env, ENV_PREFIX, declared)
        if tls_env:
            merged["service_tls"] = tls_env
    return build(merged)


CURRENT_CONTEXT: Settings | None = None


def configure(**values: Any) -> Settings:
    """Build and install the process-wide settings (explicit values over the environment)."""
    global CURRENT_CONTEXT
    CURRENT_CONTEXT = load(values)
    return CURRENT_CONTEXT


def installed() -> Settings | None:
    """The installed settings, if any, without loading them (for log filters, which must not raise)."""
    return CURRENT_CONTEXT


def install(settings: Settings) -> Settings:
    """Install an already built :class:`Settings` value (e.g. an ``attrs.evolve`` of the current one)."""
    global CURRENT_CONTEXT
    CURRENT_CONTEXT = settings
    return settings


def get_settings() -> Settings:
    """The installed settings; on first use without :func:`configure`, those of the environment."""
    global CURRENT_CONTEXT
    if CURRENT_CONTEXT is None:
        CURRENT_CONTEXT = load({})
    return CURRENT_CONTEXT


def reset() -> None:
    """Forget the installed settings (tests use this between cases)."""
    global CURRENT_CONTEXT
    CURRENT_CONTEXT = None
