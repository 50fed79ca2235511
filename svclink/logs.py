"""Logging helpers: the context filter and the redaction svclink applies to its own output."""

from .core.logs import ContextFilter, install
from .core.redact import redact, redact_headers, redact_url

__all__ = ["ContextFilter", "install", "redact", "redact_headers", "redact_url"]
