"""Log records that say which request they belong to, and never carry a credential.

:class:`ContextFilter` adds ``record.request_id`` and ``record.svclink_service`` from the
bound context, and ``record.event_id`` and ``record.event_type`` while a consumer handles an
event (``"-"`` outside one) and redacts the formatted message. Every logger of
svclink's own (``svclink.http``, ``svclink.events``...) is made with :func:`logger`, which
puts the filter on it: a logger's filters never see its children's records, so each has
its own. ``import svclink`` changes nothing else in the process's logging.

:func:`install`, which :func:`svclink.configure` (and the Django app, the Celery signals
and the ASGI middleware) call, also wraps the process's log record factory, so that the
records of the transport libraries svclink drives (urllib3, httpx, pika, aio-pika...),
which log request URLs and connection details, get the same treatment when they are made.
Records of other loggers are left alone. An application may put the filter on its own
handlers to get the same fields in all its logs::

    LOGGING = {..., "filters": {"svclink": {"()": "svclink.logs.ContextFilter"}}, ...}
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import settings as _settings
from .context.value import current
from .redact import redact

_lock = threading.Lock()
_installed = False


#: the event a consumer is handling in this thread or task: (event id, event type)
HANDLING: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "svclink_handling", default=None
)


@contextlib.contextmanager
def handling(event_id: str, event_type: str) -> Iterator[None]:
    """Records made inside carry this event's id and type."""
    token = HANDLING.set((event_id, event_type))
    try:
        yield
    finally:
        HANDLING.reset(token)


def configured_secrets() -> tuple[str, ...]:
    """The keys of the installed settings, which no text svclink writes may contain."""
    settings = _settings.installed()
    if settings is None:
        return ()
    return tuple(k for k in (settings.signing_key, *settings.verification_keys) if k)


def annotate(record: logging.LogRecord, redact_message: bool = True) -> None:
    """Add the context fields to ``record`` and redact its message in place."""
    if not hasattr(record, "request_id"):  # set when the record was made: keep that, it is the truth
        context = current()
        record.request_id = context.request_id if context is not None else "-"
    if not hasattr(record, "svclink_service"):
        settings = _settings.installed()
        record.svclink_service = (settings.service_name if settings is not None else None) or "-"
    if not hasattr(record, "event_id"):
        handling = HANDLING.get()
        record.event_id, record.event_type = handling if handling is not None else ("-", "-")
    if not redact_message or getattr(record, "_svclink_clean", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the handler's to report, not ours
        return
    clean = redact(message, configured_secrets())
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # the formatted traceback is cached on the record, so handlers print the redacted one
        record.exc_text = redact(_formatter.formatException(record.exc_info), configured_secrets())
    record._svclink_clean = True


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``svclink_service``, ``event_id`` and ``event_type`` to each record
    and redacts its message."""

    def __init__(self, name: str = "", *, redact_messages: bool = True) -> None:
        super().__init__(name)
        self.redact_messages = redact_messages

    def filter(self, record: logging.LogRecord) -> bool:
        annotate(record, self.redact_messages)
        return True


#: the loggers of the libraries svclink drives: their records carry request URLs (urllib3 at
#: DEBUG, httpx at INFO log the query string) and connection details, so they are redacted too
TRANSPORT_LOGGERS = ("urllib3", "requests", "httpx", "httpcore", "pika", "aio_pika", "aiormq")
_formatter = logging.Formatter()


def _ours(name: str) -> bool:
    return name == "svclink" or name.startswith("svclink.")


def _redacted(name: str) -> bool:
    return _ours(name) or name.split(".", 1)[0] in TRANSPORT_LOGGERS


def logger(name: str) -> logging.Logger:
    """svclink's logger ``name`` (``svclink.http``, say), with a :class:`ContextFilter` on it."""
    log = logging.getLogger(name)
    with _lock:
        if not any(isinstance(f, ContextFilter) for f in log.filters):
            log.addFilter(ContextFilter())
    return log


def install() -> None:
    """Make the records of svclink and of the transport libraries it drives carry the context
    fields and a redacted message, by wrapping the log record factory (idempotent)."""
    global _installed
    logger("svclink")
    with _lock:
        if _installed:
            return
        _installed = True
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _redacted(record.name):
                annotate(record)
            return record

        logging.setLogRecordFactory(factory)
