"""The one place that reads certificate files: one ``ssl.SSLContext`` per :class:`TLSConfig`.

Core decides which configuration a destination uses (:mod:`svclink.core.tls`); building
the context reads files, so it happens here, once per distinct configuration and process,
and every transport on both sides (requests, httpx, pika, aio-pika) is handed the same
object. It also digs the ``ssl`` error out of whatever a transport library wrapped it in,
for core to classify. Nothing here imports a transport library.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterable

from .core.errors import ConfigurationError, TLSFailure
from .core.settings import Settings
from .core.tls import TLSConfig, classify, global_plan, service_plan, uses_tls

_contexts: dict[TLSConfig, ssl.SSLContext] = {}
_lock = threading.Lock()


def context(config: TLSConfig) -> ssl.SSLContext:
    """The process's context for ``config``, built on first use (a :class:`ConfigurationError`
    naming the setting when a file cannot be loaded)."""
    found = _contexts.get(config)
    if found is None:
        with _lock:
            found = _contexts.get(config)
            if found is None:
                found = _contexts[config] = _build(config)
    return found


def _build(config: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname check and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.verify:
        _load_trust(ctx, config)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.client_cert is not None:
        _load_client_cert(ctx, config)
    return ctx


def _load_trust(ctx: ssl.SSLContext, config: TLSConfig) -> None:
    if config.ca_file is None:
        ctx.load_default_certs()
        return
    try:
        if os.path.isdir(config.ca_file):
            ctx.load_verify_locations(capath=config.ca_file)
        else:
            ctx.load_verify_locations(cafile=config.ca_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigurationError(config.field("ca_file"), f"cannot be loaded: {_reason(exc)}") from None


def _load_client_cert(ctx: ssl.SSLContext, config: TLSConfig) -> None:
    for key in ("client_cert", "client_key"):
        path = getattr(config, key)
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(config.field(key), "is not a file that can be read")
    asked: list[bool] = []

    def password() -> str:
        # without a callback OpenSSL would prompt for the password on the terminal
        asked.append(True)
        return config.key_password or ""

    try:
        ctx.load_cert_chain(config.client_cert or "", config.client_key, password)
    except (OSError, ValueError) as exc:
        key_field = config.field("client_key" if config.client_key else "client_cert")
        if asked and config.key_password is None:
            raise ConfigurationError(key_field, f"is encrypted: set {config.field('key_password')}") from None
        with_what = f" with {config.field('key_password')}" if asked else ""
        raise ConfigurationError(key_field, f"cannot be loaded{with_what}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """ssl's or the OS's short reason: never a file's contents, nor the password."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or "not a PEM certificate or key, or the key does not match the certificate"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def load_all(settings: Settings, *, fresh: bool = False) -> None:
    """Build every context the settings name files for, so that a missing or unreadable file
    fails at configure time, not on the first call. ``fresh`` reads the files again even for
    a configuration seen before: a certificate renewed in place is picked up by configuring
    anew (service objects made after that use the new context)."""
    plans = [global_plan(settings), *(service_plan(settings, s) for s in settings.service_tls)]
    configs = {p.config for p in plans if p.config.ca_file is not None or p.config.client_cert is not None}
    if fresh:
        built = {config: _build(config) for config in configs}  # all or nothing: a bad file changes none
        with _lock:
            _contexts.update(built)
        return
    for config in configs:
        context(config)


def http_context(settings: Settings, service: str, base_url: str) -> ssl.SSLContext | None:
    """The context for calls to ``service``, or None for a plain http:// service.

    Every file the settings name is loaded first (once per process), so settings installed
    without :func:`svclink.configure` (read from the environment on first use) fail here the
    same way, before any call.
    """
    load_all(settings)
    return context(service_plan(settings, service).config) if uses_tls(base_url) else None


# what a failure was

#: ssl errors that say a connection broke, not that a handshake was refused
_BREAKS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def failure_of(exc: BaseException, sent_client_cert: bool) -> TLSFailure | None:
    """What TLS failure ``exc`` (or an exception it wraps) was, or None if it is no TLS refusal."""
    for found in _chain(exc):
        if isinstance(found, ssl.SSLCertVerificationError):
            return classify(found.verify_code, None, sent_client_cert)
        if isinstance(found, ssl.SSLError) and not isinstance(found, _BREAKS):
            # getattr: a library's class that is also an SSLError (aiohttp's) may lack ssl's fields
            return classify(None, getattr(found, "reason", None) or str(found), sent_client_cert)
    return None


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and what it wraps: causes, contexts, and the exceptions libraries keep in
    ``args`` or attributes (urllib3's ``reason``, pika's ``exception``/``exceptions``)."""
    stack, seen = [exc], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        inner += [getattr(current, "exception", None), *current.args]
        inner += list(getattr(current, "exceptions", None) or ())
        stack.extend(e for e in inner if isinstance(e, BaseException))
