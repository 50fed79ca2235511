"""How each setting's value is checked and converted: the converters of
:class:`~svclink.core.settings.Settings`.

A value may come from Python (any type) or from an environment variable (a string); each
converter takes either, refuses a bad value with a :class:`ConfigurationError` naming
the field, and returns the one type the field holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from . import durations, tls
from .errors import ConfigurationError
from .http.hosts import host_problem
from .http.transports import AIO_TRANSPORTS, SYNC_TRANSPORTS, check_transport
from .observe import Observer
from .policy.breaker import BreakerPolicy
from .policy.budget import BudgetPolicy
from .policy.retry import RetryPolicy
from .tls import ServiceTLS

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
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise ConfigurationError(field, problem)
    if "?" in url or "#" in url:  # an empty one too: the paths of calls would go after it
        raise ConfigurationError(field, "must not have a query string or fragment")
    if parts.username or parts.password:
        raise ConfigurationError(field, "must not carry credentials")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ConfigurationError(field, "has an invalid port") from None
    return url.rstrip("/")


def names(field: str, value: object) -> tuple[str, ...]:
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


def amqp_urls(value: object) -> tuple[str, ...]:
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


def hosts(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("service_hosts", "must be a mapping of service name to URL")
    return MappingProxyType(
        {
            check_service_name("service_hosts", k): check_base_url(f"service_hosts[{k!r}]", v)
            for k, v in value.items()
        }
    )


def host_pattern(value: object) -> str:
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


def secret(value: object) -> str | None:
    if value is None or value == "":
        return None
    return _key("signing_key", value)


def verification_keys(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise ConfigurationError("verification_keys", "must be a list of keys")
    return tuple(_key("verification_keys", v) for v in value)


def context_ttl(value: object) -> float:
    return _seconds("context_ttl", value)


def queued_context_ttl(value: object) -> float:
    return _seconds("queued_context_ttl", value)


def max_deadline(value: object) -> float:
    return _seconds("max_deadline", value)


def require_signed_context(value: object) -> bool:
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


def outbox_poll_interval(value: object) -> float:
    return _seconds("outbox_poll_interval", value)


def outbox_retention(value: object) -> float:
    return _seconds_or_zero("outbox_retention", value)


def outbox_send_after_commit(value: object) -> bool:
    return _bool("outbox_send_after_commit", value)


def inbox_retention(value: object) -> float:
    return _seconds("inbox_retention", value)


def count(field: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(field, f"must be a whole number >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(field, f"must be at most {maximum}, got {value!r}")
    return value


def connections(value: object) -> tuple[str, ...]:
    return names("service_connections", value)


def required(value: object) -> tuple[str, ...]:
    return names("required_service_connections", value)


def propagate_error(value: object) -> bool:
    return _bool("propagate_error", value)


def trust_env(value: object) -> bool:
    return _bool("trust_env", value)


def response_timeout(value: object) -> float:
    return _seconds("response_timeout", value)


def connect_timeout(value: object) -> float:
    return _seconds("connect_timeout", value)


def pool_maxsize(value: object) -> int:
    return count("pool_maxsize", value, minimum=1)


#: the default bound on a response body (bytes kept in memory after decompression)
MAX_RESPONSE_SIZE = 100 * 1024 * 1024


def max_response_size(value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None  # no bound
    return count("max_response_size", value, minimum=1)


def insanic_headers(value: object) -> bool:
    return _bool("insanic_headers", value)


def sync_transport(value: object) -> str:
    return check_transport("sync_transport", value, SYNC_TRANSPORTS)


def aio_transport(value: object) -> str:
    return check_transport("aio_transport", value, AIO_TRANSPORTS)


def _transport_map(field: str, value: object, known: tuple[str, ...]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(field, f"must map service names to one of {', '.join(known)}")
    return MappingProxyType(
        {check_service_name(field, k): check_transport(f"{field}[{k!r}]", v, known) for k, v in value.items()}
    )


def sync_transports(value: object) -> Mapping[str, str]:
    return _transport_map("sync_transports", value, SYNC_TRANSPORTS)


def aio_transports(value: object) -> Mapping[str, str]:
    return _transport_map("aio_transports", value, AIO_TRANSPORTS)


def event_exchange(value: object) -> str:
    if (
        not isinstance(value, str)
        or not re.match(r"^[A-Za-z0-9_.:-]{1,200}$", value)
        or value.startswith("amq.")
    ):
        raise ConfigurationError(
            "event_exchange", "must be an exchange name (letters, digits, '_.:-'), not amq.*"
        )
    return value


def publish_timeout(value: object) -> float:
    return _seconds("publish_timeout", value)


def amqp_heartbeat(value: object) -> int:
    return count("amqp_heartbeat", value, maximum=65535)  # AMQP carries it in 16 bits


#: RabbitMQ's default max_message_size (128 MiB), and its hard limit (512 MiB)
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024
_BROKER_MESSAGE_LIMIT = 512 * 1024 * 1024


def max_message_size(value: object) -> int:
    return count("max_message_size", value, minimum=1, maximum=_BROKER_MESSAGE_LIMIT)


def prefetch_count(value: object) -> int:
    return count("prefetch_count", value, minimum=1, maximum=65535)  # AMQP carries it in 16 bits


def consumer_concurrency(value: object) -> int | None:
    if value is None or value == "":
        return None
    return count("consumer_concurrency", value, minimum=1, maximum=1000)


def consumer_grace(value: object) -> float:
    return _seconds("consumer_grace", value)


def handler_timeout(value: object) -> float:
    return _seconds("handler_timeout", value)


def health_port(value: object) -> int | None:
    if value is None or value == "":
        return None
    return count("worker_health_port", value, maximum=65535)


UNROUTABLE_CHOICES = ("warn", "raise")


def unroutable(value: object) -> str:
    if value not in UNROUTABLE_CHOICES:
        raise ConfigurationError("unroutable", f"must be 'warn' or 'raise', got {value!r}")
    return str(value)


def retry(value: object) -> RetryPolicy:
    if not isinstance(value, RetryPolicy):
        raise ConfigurationError("retry", "must be a svclink.RetryPolicy")
    return value


def breaker(value: object) -> BreakerPolicy:
    if not isinstance(value, BreakerPolicy):
        raise ConfigurationError("circuit_breaker", "must be a svclink.BreakerPolicy")
    return value


def breakers(value: object) -> Mapping[str, BreakerPolicy]:
    if not isinstance(value, Mapping) or not all(isinstance(v, BreakerPolicy) for v in value.values()):
        raise ConfigurationError("circuit_breakers", "must map service names to svclink.BreakerPolicy")
    return MappingProxyType({check_service_name("circuit_breakers", k): v for k, v in value.items()})


def budget(value: object) -> BudgetPolicy:
    if not isinstance(value, BudgetPolicy):
        raise ConfigurationError("retry_budget", "must be a svclink.BudgetPolicy")
    return value


def service_tls(value: object) -> Mapping[str, ServiceTLS]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("service_tls", "must map service names to TLS settings")
    return MappingProxyType(
        {
            check_service_name("service_tls", k): tls.service_entry(f"service_tls[{k!r}]", v)
            for k, v in value.items()
        }
    )


def observers(value: object) -> tuple[Observer, ...]:
    items = (value,) if isinstance(value, Observer) else value
    if not isinstance(items, Iterable) or not all(isinstance(o, Observer) for o in items):
        raise ConfigurationError("observers", "must be a list of svclink.Observer instances")
    return tuple(items)
