"""Logging helpers: the context filter, JSON logs, and the redaction svclink applies to its output.

One line gives every record of the process the context fields, as JSON on standard error::

    svclink.logs.json_logging()

or, with ``logging.config``, put :class:`ContextFilter` on a handler and :class:`JSONFormatter`
(or any format naming ``%(request_id)s``, ``%(svclink_service)s``, ``%(event_id)s``,
``%(event_type)s``) on it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from .core.logs import ContextFilter, install
from .core.redact import redact, redact_headers, redact_url

__all__ = [
    "ContextFilter",
    "JSONFormatter",
    "install",
    "json_logging",
    "redact",
    "redact_headers",
    "redact_url",
]

#: the fields every JSON line has beside the message, from the record's context fields
_FIELDS = (("request_id", "request_id"), ("service", "svclink_service"), ("event_id", "event_id"),
           ("event_type", "event_type"))  # fmt: skip


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the context fields, and the
    traceback under ``exception`` (all redacted when :class:`ContextFilter` ran first)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, attribute in _FIELDS:
            value = getattr(record, attribute, "-")
            if value != "-":
                line[key] = value
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def json_logging(level: int | str = logging.INFO, stream: Any = None) -> logging.Handler:
    """Log every record of the process as one JSON line (to ``stream``, standard error by
    default) with the context fields; returns the handler it put on the root logger."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    install()
    return handler
