"""Settings: one frozen, validated value, loaded from keyword arguments and the environment.

Everything is checked when the value is built, so a typo in a host URL fails at start-up
with the field named, not on the first call at three in the morning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from . import fleet_settings, tls
from . import setting_values as convert
from .context.peer import Network, check_proxy_settings, subject_header, trusted_proxies
from .errors import ConfigurationError
from .http.transports import AIO_TRANSPORTS, SYNC_TRANSPORTS
from .observe import Observer
from .policy.breaker import BreakerPolicy
from .policy.budget import BudgetPolicy
from .policy.retry import RetryPolicy
from .tls import ServiceTLS

ENV_PREFIX = "SVCLINK_"


@attrs.frozen(kw_only=True)
class Settings:
    """Everything svclink needs to know, checked once; derive changed copies with ``attrs.evolve``."""

    #: who we are: sent as the caller identity on every call and event
    service_name: str | None = attrs.field(default=None)
    service_connections: tuple[str, ...] = attrs.field(default=(), converter=convert.connections)
    required_service_connections: tuple[str, ...] = attrs.field(default=(), converter=convert.required)
    host_pattern: str = attrs.field(default="http://{service}:8000", converter=convert.host_pattern)
    service_hosts: Mapping[str, str] = attrs.field(factory=dict, converter=convert.hosts)
    amqp_url: tuple[str, ...] = attrs.field(
        default="amqp://guest:guest@localhost:5672/", converter=convert.amqp_urls, repr=False
    )
    #: the topic exchange events are published to and consumed from unless one is named
    event_exchange: str = attrs.field(default="svclink.events", converter=convert.event_exchange)
    #: how long a publish waits for the broker's confirm (and for a blocked broker) before failing
    publish_timeout: float = attrs.field(default=10.0, converter=convert.publish_timeout)
    #: the largest message body a publish sends, in bytes (RabbitMQ's default max_message_size)
    max_message_size: int = attrs.field(
        default=convert.DEFAULT_MAX_MESSAGE_SIZE, converter=convert.max_message_size
    )
    #: AMQP heartbeat interval in seconds (0 turns heartbeats off)
    amqp_heartbeat: int = attrs.field(default=30, converter=convert.amqp_heartbeat)
    #: messages a consumer may hold unacknowledged at once, unless it says otherwise
    prefetch_count: int = attrs.field(default=10, converter=convert.prefetch_count)
    #: handlers a consumer runs at once, unless it says otherwise (None: one at a time on
    #: svclink.sync, up to the prefetch window on svclink.aio)
    consumer_concurrency: int | None = attrs.field(default=None, converter=convert.consumer_concurrency)
    #: how long a stopping consumer waits for the handlers in flight (seconds)
    consumer_grace: float = attrs.field(default=30.0, converter=convert.consumer_grace)
    #: a handler running longer counts as failed (well below RabbitMQ's consumer_timeout of 30 min)
    handler_timeout: float = attrs.field(default=300.0, converter=convert.handler_timeout)
    #: the port of ``svclink worker``'s /livez and /readyz (None: no health endpoint)
    worker_health_port: int | None = attrs.field(default=None, converter=convert.health_port)
    #: a publish no queue is bound for: "warn" (logged, returned as not routed) or "raise"
    unroutable: str = attrs.field(default="warn", converter=convert.unroutable)
    signing_key: str | None = attrs.field(default=None, converter=convert.secret, repr=False)
    #: keys accepted (besides signing_key) when verifying a signed context: keys being rotated out
    verification_keys: tuple[str, ...] = attrs.field(
        default=(), converter=convert.verification_keys, repr=False
    )
    #: how long a signed context on an HTTP call stays valid (at least the call's own budget)
    context_ttl: float = attrs.field(default=60.0, converter=convert.context_ttl)
    #: how long a signed context on an event or a Celery task stays valid (they may wait in queues)
    queued_context_ttl: float = attrs.field(default=86400.0, converter=convert.queued_context_ttl)
    #: an incoming deadline budget (X-Svclink-Deadline-Ms) is clamped to this many seconds
    max_deadline: float = attrs.field(default=60.0, converter=convert.max_deadline)
    #: refuse (401) an incoming request whose caller context is missing or not verified
    require_signed_context: bool = attrs.field(default=False, converter=convert.require_signed_context)
    propagate_error: bool = attrs.field(default=True, converter=convert.propagate_error)
    #: the whole budget of one call, every attempt and wait included (seconds)
    response_timeout: float = attrs.field(default=10.0, converter=convert.response_timeout)
    connect_timeout: float = attrs.field(default=3.0, converter=convert.connect_timeout)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy, converter=convert.retry)
    #: the most bytes of a response body read into memory; a larger one raises ResponseTooLarge
    max_response_size: int | None = attrs.field(
        default=convert.MAX_RESPONSE_SIZE, converter=convert.max_response_size
    )
    #: connections kept per service (sync: per process; aio: per event loop)
    pool_maxsize: int = attrs.field(default=100, converter=convert.pool_maxsize)
    #: the HTTP library of the sync side ("requests" or "urllib3"), and per-service replacements
    sync_transport: str = attrs.field(default=SYNC_TRANSPORTS[0], converter=convert.sync_transport)
    sync_transports: Mapping[str, str] = attrs.field(factory=dict, converter=convert.sync_transports)
    #: the HTTP library of the aio side ("httpx" or "aiohttp"), and per-service replacements
    aio_transport: str = attrs.field(default=AIO_TRANSPORTS[0], converter=convert.aio_transport)
    aio_transports: Mapping[str, str] = attrs.field(factory=dict, converter=convert.aio_transports)
    #: honour HTTP(S)_PROXY and .netrc from the environment for internal calls
    trust_env: bool = attrs.field(default=False, converter=convert.trust_env)
    #: the circuit breaker of every service, and per-service replacements
    circuit_breaker: BreakerPolicy = attrs.field(factory=BreakerPolicy, converter=convert.breaker)
    circuit_breakers: Mapping[str, BreakerPolicy] = attrs.field(factory=dict, converter=convert.breakers)
    retry_budget: BudgetPolicy = attrs.field(factory=BudgetPolicy, converter=convert.budget)
    #: metrics hooks (see :mod:`svclink.core.observe`)
    observers: tuple[Observer, ...] = attrs.field(default=(), converter=convert.observers)
    #: also send and read Insanic's request-id header (X-Insanic-Request-ID) beside X-Request-ID
    insanic_headers: bool = attrs.field(default=False, converter=convert.insanic_headers)
    #: the layout of events published to these exchanges (``flat`` or ``envelope``, the default)
    event_formats: Mapping[str, str] = attrs.field(factory=dict, converter=fleet_settings.event_formats)
    #: exchanges svclink declares not durable (as aio-pika and FastStream do), when it declares them first
    transient_exchanges: tuple[str, ...] = attrs.field(
        default=(), converter=fleet_settings.transient_exchanges
    )
    #: seconds between the outbox relay's looks at its table when no wake-up comes
    outbox_poll_interval: float = attrs.field(default=1.0, converter=convert.outbox_poll_interval)
    #: seconds a sent outbox row is kept (0: deleted as soon as its confirm is in)
    outbox_retention: float = attrs.field(default=0.0, converter=convert.outbox_retention)
    #: send an outbox event right after its commit (best effort); off, only the relay sends it
    outbox_send_after_commit: bool = attrs.field(default=True, converter=convert.outbox_send_after_commit)
    #: seconds an inbox row (an event id a deduplicating handler has handled) is kept before pruning
    inbox_retention: float = attrs.field(default=7 * 86400.0, converter=convert.inbox_retention)
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
    service_tls: Mapping[str, ServiceTLS] = attrs.field(factory=dict, converter=convert.service_tls)
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
            convert.check_service_name("service_name", value)

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
        merged["retry"] = RetryPolicy(total=convert.count("retry_count", env[ENV_PREFIX + "RETRY_COUNT"]))
    merged.update(values)
    if "service_hosts" not in values:
        declared = convert.names("service_connections", merged.get("service_connections", ()))
        hosts = {}
        for service in declared:
            key = f"{ENV_PREFIX}SERVICE_{service.upper().replace('-', '_')}_URL"
            if key in env:
                hosts[service] = env[key]
        if hosts:
            merged["service_hosts"] = hosts
    if "service_tls" not in values:
        declared = convert.names("service_connections", merged.get("service_connections", ()))
        tls_env = tls.service_tls_from_env(env, ENV_PREFIX, declared)
        if tls_env:
            merged["service_tls"] = tls_env
    return build(merged)


_current: Settings | None = None


def configure(**values: Any) -> Settings:
    """Build and install the process-wide settings (explicit values over the environment)."""
    global _current
    _current = load(values)
    return _current


def installed() -> Settings | None:
    """The installed settings, if any, without loading them (for log filters, which must not raise)."""
    return _current


def install(settings: Settings) -> Settings:
    """Install an already built :class:`Settings` value (e.g. an ``attrs.evolve`` of the current one)."""
    global _current
    _current = settings
    return settings


def get_settings() -> Settings:
    """The installed settings; on first use without :func:`configure`, those of the environment."""
    global _current
    if _current is None:
        _current = load({})
    return _current


def reset() -> None:
    """Forget the installed settings (tests use this between cases)."""
    global _current
    _current = None
