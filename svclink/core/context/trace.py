"""W3C trace context, through OpenTelemetry when it is installed and passed through when not.

svclink never depends on OpenTelemetry. When ``opentelemetry-api`` is importable, its
global propagator writes the outgoing trace headers (so the span an instrumented app
has open becomes the parent downstream), and a context bound from an incoming request
becomes the current OpenTelemetry context unless a span is already active (an
instrumentation library's own server span always wins). Without it the incoming
``traceparent`` and ``tracestate`` go out unchanged.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

TRACEPARENT_RE = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
)
_TRACESTATE_RE = re.compile(r"^[\x20-\x7e]{1,512}$")


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a W3C traceparent (version ff and all-zero ids refused), else None."""
    if value is None or len(value) > 256:
        return None
    value = value.strip()
    if not TRACEPARENT_RE.match(value):
        return None
    if value.startswith("00-") and len(value) != 55:
        return None  # version 00 has no extra fields
    return value


def valid_tracestate(value: str | None) -> str | None:
    """``value`` if it is printable and at most 512 characters (the W3C limit), else None."""
    if value is None or not _TRACESTATE_RE.match(value):
        return None
    return value.strip() or None


_NOT_LOOKED_UP: Any = object()
_modules: tuple[ModuleType, ModuleType, ModuleType] | None = _NOT_LOOKED_UP


def _otel() -> tuple[ModuleType, ModuleType, ModuleType] | None:
    """The OpenTelemetry API modules, or None when it is not installed.

    Looked up once: a failed import is not cached by Python, and repeating it on every
    call (a search of sys.path) would cost more than the rest of the call's own work.
    """
    global _modules
    if _modules is _NOT_LOOKED_UP:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            _modules = None
        else:
            _modules = (context, propagate, trace)
    return _modules


#: a global the OpenTelemetry API does not have (any more)
_ABSENT: Any = object()


#: the environment variable naming the provider each API global is loaded from
_PROVIDER_VARIABLES = {
    "_TRACER_PROVIDER": "OTEL_PYTHON_TRACER_PROVIDER",
    "_METER_PROVIDER": "OTEL_PYTHON_METER_PROVIDER",
}


@functools.cache
def _named(name: str) -> bool:
    """Does the environment name a provider for the API global ``name``? Read once."""
    return _PROVIDER_VARIABLES.get(name, "") in os.environ


def provider_installed(module: ModuleType, name: str, get: Callable[[], Any]) -> bool:
    """Has an SDK's provider been set as ``module.name`` (the API's global for it)?

    The global is read directly: until a provider is set, the API's getter does more than
    that on every call (two look-ups in ``os.environ``, a call chain), which costs more
    than planning an HTTP call. The getter is asked only when the environment named a
    provider when svclink first looked (the getter loads that one and sets the global), or
    should a later API not have that global. The API's stand-ins are its proxy providers
    (``ProxyTracerProvider``, ``_ProxyMeterProvider``).
    """
    provider = getattr(module, name, _ABSENT)
    if provider is _ABSENT or (provider is None and _named(name)):
        provider = get()
    return provider is not None and not type(provider).__name__.lstrip("_").startswith("Proxy")


#: the OpenTelemetry API's ``context``, ``propagate`` and ``trace`` modules, or None
api = _otel


def available() -> bool:
    """Is the OpenTelemetry API installed?"""
    return _otel() is not None


def inject() -> dict[str, str]:
    """The trace headers OpenTelemetry's propagator writes for the current context ({} without it)."""
    otel = _otel()
    if otel is None or not otel[0].get_current():  # an empty context (the usual case) holds no span
        return {}
    if not otel[2].get_current_span().get_span_context().is_valid:
        return {}  # no span: nothing to propagate beyond the bound traceparent
    carrier: dict[str, str] = {}
    otel[1].inject(carrier)
    return {k: v for k, v in carrier.items() if isinstance(k, str) and isinstance(v, str)}


def attach(traceparent: str | None, tracestate: str | None) -> Any:
    """Make the incoming trace OpenTelemetry's current context; a token for :func:`detach`, or None.

    Nothing happens without OpenTelemetry, without a traceparent, or when a span is
    already active.
    """
    otel = _otel()
    if otel is None or traceparent is None:
        return None
    context, propagate, trace = otel
    if trace.get_current_span().get_span_context().is_valid:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return context.attach(propagate.extract(carrier))


def detach(token: Any) -> None:
    """Undo :func:`attach`."""
    if token is None:
        return
    otel = _otel()
    if otel is not None:
        otel[0].detach(token)
