"""TLS decisions: which certificates a connection trusts and presents, and what a failure was.

Settings name files (a CA bundle or directory, a client certificate and key) globally and
per service; this module resolves them into a :class:`TLSConfig` per destination, a
hashable value that the drivers turn into one ``ssl.SSLContext`` each (built once per
process and shared by every transport: see :mod:`svclink._tls`, the one place that
reads the files). It also tells what a failed handshake was, from what ``ssl`` reported,
so that both sides and every transport raise the same error with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import attrs

from .errors import ConfigurationError, TLSFailure
from .logs import logger

if TYPE_CHECKING:
    from .settings import Settings

log = logger("svclink.tls")

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

#: the keys of a per-service entry of ``service_tls``: the global ``tls_*`` settings' names
SERVICE_KEYS = ("ca_file", "client_cert", "client_key", "key_password", "verify", "server_hostname")


def check_path(field: str, value: object) -> str | None:
    """A file or directory name (not read here: the driver loads it), or None when unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(field, f"must be a file path, got {type(value).__name__}")
    if _CONTROL_RE.search(value):
        raise ConfigurationError(field, "must not contain control characters")
    return value


def check_password(field: str, value: object) -> str | None:
    """The client key's password, never echoed."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(field, "must be a string")
    return value


def check_verify(field: str, value: object) -> bool | None:
    """True or False (strings from the environment too); None when unset (per service)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(field, f"must be true or false, got {value!r}")


def check_hostname(field: str, value: object) -> str | None:
    """The name a server's certificate must carry (for a service reached by IP or alias)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HOSTNAME_RE.fullmatch(value):
        raise ConfigurationError(field, "must be a host name (letters, digits, '.', '-')")
    return value


@attrs.frozen(kw_only=True)
class ServiceTLS:
    """One service's TLS settings; a field left as None takes the global ``tls_*`` value."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    key_password: str | None = attrs.field(default=None, repr=False)
    verify: bool | None = None
    server_hostname: str | None = None


def service_entry(field: str, value: object) -> ServiceTLS:
    """A :class:`ServiceTLS` from a mapping with :data:`SERVICE_KEYS` (or one already built)."""
    if isinstance(value, ServiceTLS):
        return value
    if not isinstance(value, Mapping):
        raise ConfigurationError(field, f"must be a mapping with keys among {', '.join(SERVICE_KEYS)}")
    unknown = sorted(set(value) - set(SERVICE_KEYS))
    if unknown:
        raise ConfigurationError(f"{field}[{unknown[0]!r}]", f"is not one of {', '.join(SERVICE_KEYS)}")
    return ServiceTLS(
        ca_file=check_path(f"{field}['ca_file']", value.get("ca_file")),
        client_cert=check_path(f"{field}['client_cert']", value.get("client_cert")),
        client_key=check_path(f"{field}['client_key']", value.get("client_key")),
        key_password=check_password(f"{field}['key_password']", value.get("key_password")),
        verify=check_verify(f"{field}['verify']", value.get("verify")),
        server_hostname=check_hostname(f"{field}['server_hostname']", value.get("server_hostname")),
    )


def tls_ca_file(value: object) -> str | None:
    return check_path("tls_ca_file", value)


def tls_client_cert(value: object) -> str | None:
    return check_path("tls_client_cert", value)


def tls_client_key(value: object) -> str | None:
    return check_path("tls_client_key", value)


def tls_key_password(value: object) -> str | None:
    return check_password("tls_key_password", value)


def tls_verify(value: object) -> bool:
    checked = check_verify("tls_verify", value)
    if checked is None:
        raise ConfigurationError("tls_verify", "must be true or false")
    return checked


def tls_server_hostname(value: object) -> str | None:
    return check_hostname("tls_server_hostname", value)


def service_tls_from_env(
    env: Mapping[str, str], env_prefix: str, declared: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    """``SVCLINK_SERVICE_<NAME>_TLS_<KEY>`` for each declared service and ``service_tls`` key."""
    found: dict[str, dict[str, str]] = {}
    for service in declared:
        prefix = f"{env_prefix}SERVICE_{service.upper().replace('-', '_')}_TLS_"
        for key in SERVICE_KEYS:
            if prefix + key.upper() in env:
                found.setdefault(service, {})[key] = env[prefix + key.upper()]
    return found


@attrs.frozen(kw_only=True)
class TLSConfig:
    """What one ``ssl.SSLContext`` holds: equal values share one context.

    ``ca_file`` None means the system's trust store (which OpenSSL lets ``SSL_CERT_FILE``
    and ``SSL_CERT_DIR`` replace). ``source`` says which settings named the files, for the
    message when one cannot be loaded.
    """

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    key_password: str | None = attrs.field(default=None, repr=False)
    verify: bool = True
    #: the settings that named the files: ``"tls_"`` (global) or ``"service_tls['user']"``
    source: str = attrs.field(default="tls_", eq=False)

    def field(self, key: str) -> str:
        """The name of the setting ``key`` (``client_key``, say) as the user wrote it."""
        return f"tls_{key}" if self.source == "tls_" else f"{self.source}[{key!r}]"

    @property
    def sends_client_cert(self) -> bool:
        return self.client_cert is not None


@attrs.frozen
class TLSPlan:
    """How to secure connections to one destination: the context and the name to check."""

    config: TLSConfig
    #: the name the server's certificate must carry, when not the host connected to
    server_hostname: str | None


def _check_pair(config: TLSConfig) -> None:
    if config.client_cert is None:
        for key in ("client_key", "key_password"):
            if getattr(config, key) is not None:
                cert = config.field("client_cert")
                raise ConfigurationError(config.field(key), f"is set but {cert} is not")


def global_plan(settings: Settings) -> TLSPlan:
    """The ``tls_*`` settings: for every service without its own, and for ``amqps://`` nodes."""
    config = TLSConfig(
        ca_file=settings.tls_ca_file,
        client_cert=settings.tls_client_cert,
        client_key=settings.tls_client_key,
        key_password=settings.tls_key_password,
        verify=settings.tls_verify,
        source="tls_",
    )
    return TLSPlan(config, settings.tls_server_hostname)


def service_plan(settings: Settings, service: str) -> TLSPlan:
    """The TLS of calls to ``service``: its ``service_tls`` entry over the global settings.

    A service that names its own client certificate does not inherit the global key or
    password (they belong to another certificate).
    """
    base = global_plan(settings)
    own = settings.service_tls.get(service)
    if own is None:
        return base
    g = base.config
    cert_given = own.client_cert is not None
    config = TLSConfig(
        ca_file=own.ca_file if own.ca_file is not None else g.ca_file,
        client_cert=own.client_cert if cert_given else g.client_cert,
        client_key=own.client_key if cert_given else g.client_key,
        key_password=own.key_password if cert_given else g.key_password,
        verify=own.verify if own.verify is not None else g.verify,
        source=f"service_tls[{service!r}]",
    )
    hostname = own.server_hostname if own.server_hostname is not None else base.server_hostname
    return TLSPlan(config, hostname)


def check_settings(settings: Settings) -> None:
    """Refuse inconsistent TLS settings, and warn loudly about every unverified destination."""
    _check_pair(global_plan(settings).config)
    for service, own in settings.service_tls.items():
        # a key or password of its own belongs to a certificate of its own
        mine = TLSConfig(
            client_cert=own.client_cert,
            client_key=own.client_key,
            key_password=own.key_password,
            source=f"service_tls[{service!r}]",
        )
        _check_pair(mine)
    if not settings.tls_verify:
        log.warning(
            "tls_verify is False: svclink does NOT check the certificates of HTTPS services and "
            "amqps:// brokers; anyone on the network path can impersonate them. Never in production."
        )
    for service, own in settings.service_tls.items():
        if own.verify is False and settings.tls_verify:
            log.warning(
                "service_tls[%r] verify is False: svclink does NOT check the certificate of "
                "service %r; anyone on the network path can impersonate it. Never in production.",
                service,
                service,
            )


def uses_tls(url: str) -> bool:
    """Whether a service base URL or an AMQP URL is secured by TLS."""
    return url.startswith(("https:", "amqps:"))


@attrs.frozen
class BrokerTLS:
    """How to secure the connection to one ``amqps://`` node."""

    config: TLSConfig
    #: the name the node's certificate must carry: ``tls_server_hostname``, else the URL's host
    server_hostname: str
    #: log in with EXTERNAL: the client certificate is the identity (the URL has no password)
    external: bool


def broker_tls(settings: Settings, url: str) -> BrokerTLS | None:
    """The TLS of the node ``url`` names, or None for ``amqp://``: the global ``tls_*``
    settings, each node's certificate checked against its own host name."""
    if not url.startswith("amqps:"):
        return None
    parts = urlsplit(url)
    plan = global_plan(settings)
    external = plan.config.client_cert is not None and not parts.password
    return BrokerTLS(plan.config, plan.server_hostname or parts.hostname or "", external)


# what a failed handshake was

#: OpenSSL's X509_V_ERR_* codes (``ssl.SSLCertVerificationError.verify_code``) that say why
_VERIFY_CODES = {
    9: TLSFailure.EXPIRED,  # certificate is not yet valid
    10: TLSFailure.EXPIRED,  # certificate has expired
    62: TLSFailure.HOSTNAME,  # hostname mismatch
    63: TLSFailure.HOSTNAME,  # email address mismatch
    64: TLSFailure.HOSTNAME,  # IP address mismatch
}

#: TLS alerts the server sends about the client's certificate (``ssl.SSLError.reason``)
_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "UNKNOWN_CA",
    "BAD_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)


def classify(verify_code: int | None, reason: str | None, sent_client_cert: bool) -> TLSFailure:
    """What a handshake failure was, from ``ssl``'s verify code (our check of the server's
    certificate failed) or the error's reason (the server sent an alert, or other trouble)."""
    if verify_code is not None:
        return _VERIFY_CODES.get(verify_code, TLSFailure.UNTRUSTED)
    reason = (reason or "").upper()
    if "CERTIFICATE_REQUIRED" in reason:
        return TLSFailure.CLIENT_CERT_MISSING
    if any(alert in reason for alert in _CLIENT_CERT_ALERTS) or "HANDSHAKE_FAILURE" in reason:
        return TLSFailure.CLIENT_CERT_REFUSED if sent_client_cert else TLSFailure.CLIENT_CERT_MISSING
    return TLSFailure.HANDSHAKE


_DESCRIPTIONS = {
    TLSFailure.UNTRUSTED: "the server's certificate is not signed by a trusted CA (check tls_ca_file)",
    TLSFailure.EXPIRED: "the server's certificate has expired (or is not valid yet)",
    TLSFailure.HOSTNAME: (
        "the server's certificate is not valid for the host name connected to "
        "(set tls_server_hostname for a service reached by IP or another name)"
    ),
    TLSFailure.CLIENT_CERT_MISSING: (
        "the server requires a client certificate and none was sent (tls_client_cert)"
    ),
    TLSFailure.CLIENT_CERT_REFUSED: "the server refused the client certificate (tls_client_cert)",
    TLSFailure.HANDSHAKE: "the TLS handshake failed",
}


def describe(failure: TLSFailure, hostname: str | None = None) -> str:
    """The words for ``failure``, with the name that was checked for a mismatch."""
    text = _DESCRIPTIONS[failure]
    if failure is TLSFailure.HOSTNAME and hostname:
        text = text.replace("the host name connected to", repr(hostname))
    return f"TLS: {text}; not retried"
