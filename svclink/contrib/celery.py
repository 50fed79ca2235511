"""Celery integration: a task carries the context of the code that sent it.

``install(app)`` connects three Celery signals:

- ``before_task_publish``: the bound context (request id, trace, user) goes into the
  task message's headers as ``svclink_context``, with a signed caller context whose
  audience is ``svclink:tasks:<service_name>`` (so it cannot be replayed as an HTTP call);
- ``task_prerun``: the worker reads it through :func:`svclink.context.incoming`, binds
  it for the run, and exposes the verdict as ``task.request.svclink``;
- ``task_postrun``: the binding is undone.

So a task started from a Django view calls services and publishes events with the
view's request id and user, in any worker pool (prefork, threads, solo). The signals are
process-wide; ``install`` is idempotent. A task run in the caller's process
(``task.apply()``, ``task_always_eager`` or ``task.run()``) keeps the caller's context, and
its ``request.svclink`` says it came from this service, for the context's user.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from ..core import logs
from ..core.context.incoming import incoming, local_caller, log_incoming
from ..core.context.outgoing import message_headers
from ..core.context.value import Caller, bind, current
from ..core.settings import Settings, get_settings

HEADER = "svclink_context"

_lock = threading.Lock()
_bound: dict[str, contextlib.ExitStack] = {}


def task_audience(settings: Settings) -> str:
    """The audience of a task's signed context: the service whose workers run it."""
    return f"svclink:tasks:{settings.service_name or ''}"


def _publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None:
        return
    settings = get_settings()
    headers[HEADER] = message_headers(settings, audience=task_audience(settings), wall=time.time())


def _carrier(task: Any) -> dict[str, Any] | None:
    request = getattr(task, "request", None)
    carrier = getattr(request, HEADER, None)
    if carrier is None:
        carrier = (getattr(request, "headers", None) or {}).get(HEADER)
    return carrier if isinstance(carrier, dict) else None


def _prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    carrier = _carrier(task)
    if carrier is None or task_id is None:
        return  # not sent through install()ed code, or run eagerly: keep the caller's context
    settings = get_settings()
    result = incoming(
        carrier,
        settings=settings,
        now=time.monotonic(),
        wall=time.time(),
        audience=task_audience(settings),
        strict=False,
    )
    log_incoming(result, "task")
    caller: Caller = result.caller
    with contextlib.suppress(AttributeError):
        task.request.svclink = caller
    stack = contextlib.ExitStack()
    stack.enter_context(bind(result.context))
    with _lock:
        _bound[task_id] = stack


def _postrun(task_id: str | None = None, **kwargs: Any) -> None:
    with _lock:
        stack = _bound.pop(task_id or "", None)
    if stack is not None:
        stack.close()


def _request_caller(request: Any) -> Caller:
    """``task.request.svclink``: the verdict set by ``task_prerun``, else the local one."""
    caller = request.__dict__.get("svclink")
    return caller if isinstance(caller, Caller) else local_caller(get_settings(), current())


def _set_request_caller(request: Any, caller: Caller) -> None:
    request.__dict__["svclink"] = caller


def install(app: Any = None) -> None:
    """Carry svclink's context with every task published and bind it while tasks run.

    ``app`` is the Celery app (accepted for symmetry with other integrations; the
    signals Celery offers apply to every app in the process).
    """
    from celery import signals
    from celery.app.task import Context

    # a property on Celery's request class, so a task run without a message (.run(),
    # .apply(), eager mode) sees a verdict too
    Context.svclink = property(_request_caller, _set_request_caller)

    signals.before_task_publish.connect(_publish, weak=False, dispatch_uid="svclink.celery.publish")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="svclink.celery.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="svclink.celery.postrun")
    logs.install()
