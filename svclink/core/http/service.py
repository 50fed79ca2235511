"""What a service object decides before any I/O; the sync and aio services only add the send loop.

This is svclink's ``BaseClient``: turning ``http_dispatch`` arguments into a
:class:`~svclink.core.http.calls.CallPlan` (URL, headers, body, timeouts, retry policy) is
the same for both sides, so it lives here once.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from .. import durations
from ..context.outgoing import add_insanic_request_id, check_header, outgoing_headers, sign_headers
from ..context.value import current
from ..errors import InvalidRequest
from ..logs import logger
from ..observe import notify
from ..policy.breaker import CircuitBreaker, State
from ..policy.budget import RetryBudget
from ..policy.retry import RetryPolicy
from ..redact import redact_url
from ..settings import Settings
from ..telemetry import NO_SPAN, annotate, client_span, span, tracing
from ..tls import service_plan
from . import multipart
from .calls import CallPlan, Guard
from .credentials import add_authorization, netrc_authorization
from .multipart import FileSpec
from .registry import base_url, live_guards
from .urls import build_url

log = logger("svclink.http")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: a JSON body larger than this is refused before any I/O
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024


def _json_default(value: object) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"a {type(value).__name__} is not JSON serialisable")


def encode_json(payload: Any) -> bytes:
    """``payload`` as compact UTF-8 JSON; datetimes, dates, UUIDs and Decimals as strings."""
    try:
        data = json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"payload cannot be sent as JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("payload cannot be sent as JSON: it is nested too deeply") from None
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidRequest(f"payload is {len(data)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    return data


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _check_part_name(what: str, name: str) -> None:
    """Multipart names go into part headers: no control characters, and sendable as UTF-8."""
    if _CONTROL_RE.search(name):
        raise InvalidRequest(f"a {what} must not contain control characters")
    _check_utf8(what, name)


def _check_utf8(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"a {what} is not valid Unicode (a lone surrogate?)") from None


def _form(payload: Any) -> dict[str, str]:
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise InvalidRequest("with files=, payload must be a mapping of form fields")
    form = {}
    for name, value in payload.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidRequest("with files=, form fields must map str names to str or number values")
        _check_part_name("form field name", name)
        form[name] = str(value)
        _check_utf8("form field value", form[name])
    return form


def _given_files(files: object) -> Mapping[str, Any] | None:
    """The files a call sends, or None: ``None`` and an empty mapping both mean none (as Insanic
    reads them: its users pass ``files={}`` by default)."""
    if files is None:
        return None
    if not isinstance(files, Mapping):
        raise InvalidRequest("files must be a mapping of field name to (filename, bytes[, type])")
    return files or None


#: methods whose requests have no body: a payload for them belongs in the query string
_BODILESS = frozenset({"GET", "HEAD"})


def _bodiless_payload(method: str, payload: object) -> None:
    """Refuse a non-empty payload on a GET or HEAD, saying where its values go; an empty one
    (``{}``, ``[]``, ``""``, as Insanic code passes by default) sends no body."""
    empty = isinstance(payload, (Mapping, list, tuple, str, bytes)) and not payload
    if payload is not None and not empty:
        raise InvalidRequest(
            f"a {method} request has no body: pass the payload's values as query_params=... instead"
        )


def _files(files: Mapping[str, Any]) -> dict[str, FileSpec]:
    checked: dict[str, FileSpec] = {}
    for name, spec in files.items():
        if isinstance(spec, bytes):
            spec = (name, spec)
        ok = (
            isinstance(name, str)
            and isinstance(spec, tuple)
            and len(spec) in (2, 3)
            and isinstance(spec[0], str)
            and isinstance(spec[1], bytes)
            and (len(spec) == 2 or isinstance(spec[2], str))
        )
        if not ok:
            raise InvalidRequest(
                "each file must be bytes or (filename, bytes) or (filename, bytes, content_type)"
            )
        check_header("Content-Type", spec[2] if len(spec) == 3 else "x")
        _check_part_name("file field name", name)
        _check_part_name("file name", spec[0])
        checked[name] = spec
    return checked


def _timeout(value: object) -> float:
    """Seconds, clamped to a year (see :mod:`svclink.core.durations`), so no driver overflows."""
    checked = durations.seconds(value)
    if checked is None:
        raise InvalidRequest("response_timeout must be a positive, finite number of seconds")
    return checked


#: headers that frame the body on the wire: the transport sets them from the body it sends
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


def _check_framing(headers: Mapping[str, str]) -> None:
    """A caller's own framing header would contradict the body (requests replaces it, httpx
    sends it and fails, both together are a request smuggling pattern): refused."""
    for name in headers:
        if name.lower() in _FRAMING_HEADERS:
            raise InvalidRequest(f"header {name!r} is set by svclink from the body; do not pass it")


def _flag(name: str, value: object) -> bool:
    """A yes/no argument: a bool, not anything with a truth value (``"no"`` is true)."""
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be True or False, got {type(value).__name__}")
    return value


def _idempotency_key(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise InvalidRequest("idempotency_key must be a non-empty str that is not only blanks")
    return value


def _max_response_size(value: object, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("max_response_size must be a whole number of bytes >= 1")
    return value


def _read_only(service: str, what: str) -> str:
    """Why assigning a service's ``host`` or ``port`` (which Insanic allowed) does nothing here."""
    return (
        f"{service}.{what} is read-only: a service's address comes from the settings; set "
        f"service_hosts={{{service!r}: 'http://host:port'}} (or host_pattern) with svclink.configure()"
    )


class BaseService:
    """A declared service: its name, base URL and settings, and how calls to it are planned."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.base_url = base_url(settings, name)
        #: the certificates calls to this service trust and present, and the name checked
        self.tls = service_plan(settings, name)
        #: the .netrc credentials for the service's host (read once, with ``trust_env`` only)
        self.netrc_authorization = netrc_authorization(self.base_url) if settings.trust_env else None
        self.guard = Guard(
            breaker=CircuitBreaker(name, settings.breaker_policy(name), self._breaker_changed),
            budget=RetryBudget(settings.retry_budget),
            observers=settings.observers,
        )
        live_guards.add(self.guard)

    def _breaker_changed(self, service: str, old: State, new: State) -> None:
        log.warning("circuit breaker of service %r: %s -> %s", service, old.value, new.value)
        notify(self.settings.observers, "on_breaker", service, old, new)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} {self.name!r} at {self.base_url}>"

    @property
    def service_name(self) -> str:
        """The service's name (Insanic's ``Service.service_name``); the same as :attr:`name`."""
        return self.name

    @property
    def url(self) -> str:
        """The base URL calls go to (Insanic's ``Service.url``)."""
        return self.base_url

    @property
    def host(self) -> str:
        """The host calls go to; read-only: the address comes from the settings."""
        return urlsplit(self.base_url).hostname or ""

    @host.setter
    def host(self, _value: object) -> None:
        raise AttributeError(_read_only(self.name, "host"))

    @property
    def port(self) -> int:
        """The port calls go to (the scheme's default when the URL names none); read-only."""
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @port.setter
    def port(self, _value: object) -> None:
        raise AttributeError(_read_only(self.name, "port"))

    def traced(self, method: str, endpoint: str) -> Any:
        """The CLIENT span of one ``http_dispatch`` (current while it runs, so the trace headers
        name it and the call flow's reports land on it); a shared no-op without OpenTelemetry."""
        if not tracing():
            return NO_SPAN
        name, attributes = client_span(self.name, str(method).upper(), str(endpoint), self.base_url)
        return span("CLIENT", name, attributes)

    def plan(
        self,
        method: str,
        endpoint: str,
        *,
        query_params: Mapping[str, Any] | None = None,
        path_params: Mapping[str, Any] | None = None,
        payload: Any = None,
        files: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        propagate_error: bool | None = None,
        include_status_code: bool = False,
        response_timeout: float | None = None,
        retry_count: int | None = None,
        idempotency_key: str | None = None,
        raw_response: bool = False,
        max_response_size: int | None = None,
        wall: float | None = None,
    ) -> CallPlan:
        """Check every argument and decide everything about the call; no I/O.

        ``wall`` is the epoch clock, for the signed caller context (none without it).
        """
        method = method.upper() if isinstance(method, str) else ""
        if method not in METHODS:
            raise InvalidRequest(f"method must be one of {', '.join(sorted(METHODS))}")
        settings = self.settings
        url = build_url(self.base_url, endpoint, path_params, query_params)
        idempotency_key = _idempotency_key(idempotency_key)
        propagate = (
            settings.propagate_error if propagate_error is None else _flag("propagate_error", propagate_error)
        )
        include_status_code = _flag("include_status_code", include_status_code)
        raw_response = _flag("raw_response", raw_response)
        body_limit = _max_response_size(max_response_size, settings.max_response_size)
        ctx = current()
        hdrs = outgoing_headers(
            caller=settings.service_name, context=ctx, extra=headers, idempotency_key=idempotency_key
        )
        if headers:  # the defaults never frame a body: only the caller's own can
            _check_framing(headers)
        add_authorization(hdrs, self.netrc_authorization)
        if settings.insanic_headers:
            add_insanic_request_id(hdrs)
        content, form, file_map = None, None, None
        if method in _BODILESS:
            _bodiless_payload(method, payload)
            payload = None
        if (given := _given_files(files)) is not None:
            form, file_map = _form(payload), _files(given)
            content, hdrs["Content-Type"] = multipart.encode(form, file_map, multipart.new_boundary())
            for name in [k for k in hdrs if k.lower() == "content-type" and k != "Content-Type"]:
                del hdrs[name]  # the boundary is ours: a caller's own multipart type cannot be right
        elif payload is not None:
            content = encode_json(payload)
            if not any(k.lower() == "content-type" for k in hdrs):  # the caller's own type wins
                hdrs["Content-Type"] = "application/json"
        policy = settings.retry
        if retry_count is not None:
            if isinstance(retry_count, bool) or not isinstance(retry_count, int) or retry_count < 0:
                raise InvalidRequest("retry_count must be a whole number >= 0")
            policy = attrs.evolve(policy, total=retry_count)
        timeout = settings.response_timeout if response_timeout is None else _timeout(response_timeout)
        if wall is not None:
            ttl = max(settings.context_ttl, timeout)
            sign_headers(hdrs, settings, ctx, audience=self.name, wall=wall, ttl=ttl)
        if tracing():  # the CLIENT span (see traced) learns the URL once it is built
            annotate({"url.full": redact_url(url)})
        return CallPlan(
            service=self.name,
            method=method,
            endpoint=endpoint,
            url=url,
            headers=hdrs,
            content=content,
            form=form,
            files=file_map,
            timeout=timeout,
            connect_timeout=settings.connect_timeout,
            policy=policy,
            idempotency_key=idempotency_key,
            propagate_error=propagate,
            include_status_code=include_status_code,
            raw_response=raw_response,
            context_deadline=ctx.deadline if ctx is not None else None,
            server_hostname=self.tls.server_hostname,
            max_response_size=body_limit,
        )


__all__ = ["BaseService", "RetryPolicy", "encode_json"]
