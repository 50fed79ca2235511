"""svclink: service-to-service HTTP calls and RabbitMQ events, sync first with an asyncio mirror.

This module imports no transport library: ``svclink.sync`` brings requests and pika,
``svclink.aio`` brings httpx and aio-pika.
"""

from ._version import __version__
from .configuration import configure
from .core.context.value import Caller, RequestContext, User, bind, current
from .core.events.envelope import Event
from .core.http.responses import Response
from .core.observe import AttemptInfo, CallInfo, LoggingObserver, Observer, PublishInfo, UnroutableInfo
from .core.policy.breaker import BreakerPolicy
from .core.policy.budget import BudgetPolicy
from .core.policy.retry import RetryPolicy
from .core.settings import Settings, get_settings, reset
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .health import check

__all__ = [
    "AttemptInfo",
    "BreakerPolicy",
    "BudgetPolicy",
    "CallInfo",
    "Caller",
    "Event",
    "LoggingObserver",
    "Observer",
    "PublishInfo",
    "UnroutableInfo",
    "RequestContext",
    "Response",
    "RetryPolicy",
    "Settings",
    "User",
    "__version__",
    "bind",
    "check",
    "configure",
    "current",
    "get_settings",
    "reset",
    *_errors,
]
