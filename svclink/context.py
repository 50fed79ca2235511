"""The request context: what a request carries from service to service, and how to read it.

``current()`` is the context bound in this thread or task; ``bind(...)`` binds one for a
``with`` block. The middlewares (:mod:`svclink.contrib.django`, :mod:`svclink.contrib.asgi`),
the Celery signals (:mod:`svclink.contrib.celery`) and the event consumers bind it for
you; :func:`incoming` is what they all use to read an incoming request.
"""

from .core.context.incoming import Incoming, incoming
from .core.context.outgoing import (
    CALLER_HEADER,
    CONTEXT_HEADER,
    DEADLINE_HEADER,
    EVENTS_AUDIENCE,
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    message_headers,
)
from .core.context.signing import Claims, SignatureError, sign, verify
from .core.context.value import Caller, RequestContext, User, bind, current, new_request_id

__all__ = [
    "CALLER_HEADER",
    "CONTEXT_HEADER",
    "DEADLINE_HEADER",
    "EVENTS_AUDIENCE",
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "Caller",
    "Claims",
    "Incoming",
    "RequestContext",
    "SignatureError",
    "User",
    "bind",
    "current",
    "incoming",
    "message_headers",
    "new_request_id",
    "sign",
    "verify",
]
