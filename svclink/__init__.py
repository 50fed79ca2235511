"""svclink: service-to-service HTTP calls and RabbitMQ events, sync first with an asyncio mirror.

This module imports no transport library: ``svclink.sync`` brings requests and pika,
``svclink.aio`` brings httpx and aio-pika.
"""

from ._version import __version__
from .configuration import configure
from .core.context.value import RequestContext
from .core.logs import install as _install_log_context
from .core.observe import LoggingObserver, Observer
from .core.policy.breaker import BreakerPolicy
from .core.policy.budget import BudgetPolicy
from .core.policy.retry import RetryPolicy
from .core.settings import Settings, get_settings, reset
from .errors import *  # noqa: F403
from .errors import __all__ as _errors
from .health import check

_install_log_context()

__all__ = [
    "BreakerPolicy",
    "BudgetPolicy",
    "LoggingObserver",
    "Observer",
    "RequestContext",
    "RetryPolicy",
    "Settings",
    "__version__",
    "check",
    "configure",
    "get_settings",
    "reset",
    *_errors,
]
