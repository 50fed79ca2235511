"""Views that report what svclink saw and call the ``user`` service, sync and async."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse

import svclink
import svclink.aio
import svclink.sync
from svclink.context import current


def seen(request: HttpRequest) -> dict[str, Any]:
    """What the middleware bound: the caller verdict and the context."""
    caller = request.svclink  # type: ignore[attr-defined]
    context = current()
    assert context is not None
    return {
        "verified": caller.verified,
        "caller": caller.service,
        "caller_user": caller.user_id,
        "reason": caller.reason,
        "tls_subject": caller.tls_subject,
        "request_id": context.request_id,
        "user_id": context.user_id,
        "has_deadline": context.deadline is not None,
    }


def whoami_local(request: HttpRequest) -> JsonResponse:
    """What the middleware bound, with no call made."""
    return JsonResponse(seen(request))


async def awhoami_local(request: HttpRequest) -> JsonResponse:
    return JsonResponse(seen(request))


def whoami(request: HttpRequest) -> JsonResponse:
    body = seen(request)
    try:
        body["downstream"] = svclink.sync.get_service("user").http_dispatch("GET", "/downstream")
    except svclink.ServiceTimeout:
        body["downstream"] = "timeout"
    return JsonResponse(body)


async def awhoami(request: HttpRequest) -> JsonResponse:
    body = seen(request)
    try:
        user = await svclink.aio.get_service("user")
        body["downstream"] = await user.http_dispatch("GET", "/downstream")
    except svclink.ServiceTimeout:
        body["downstream"] = "timeout"
    return JsonResponse(body)


def user_from_header(request: HttpRequest) -> tuple[str, dict[str, str]] | None:
    """A custom ``user_context``: the user a trusted gateway named in a header."""
    name = request.headers.get("X-Test-User")
    return (name, {"plan": "pro"}) if name else None


def e2e(request: HttpRequest) -> JsonResponse:
    """The end-to-end entry point: call service B, start a Celery task that calls C."""
    from tests import celery_app

    answer = svclink.sync.get_service("b").http_dispatch("POST", "/bare/publish")
    task = celery_app.call_c.delay("/from-task", "sync-requests")
    return JsonResponse({"b": answer, "task_id": task.id, **seen(request)})


#: the users created through ``users/`` in this process
_users: list[dict[str, Any]] = []


def users(request: HttpRequest) -> JsonResponse:
    """``GET`` lists the users, ``POST`` (a JSON body) creates one: a DRF-style collection."""
    if request.method == "POST":
        user = {"id": len(_users) + 1, **json.loads(request.body)}
        _users.append(user)
        return JsonResponse(user, status=201)
    return JsonResponse(_users, safe=False)


def upload(request: HttpRequest) -> JsonResponse:
    """What Django's own multipart parser made of the body: form fields and files."""
    files = {
        name: {"filename": f.name, "content_type": f.content_type, "content": f.read().decode("latin-1")}
        for name, f in request.FILES.items()
    }
    return JsonResponse({"form": request.POST.dict(), "files": files})


def traced(request: HttpRequest) -> JsonResponse:
    """Call ``user`` and publish ``order.paid``: the trace of the request goes on through both."""
    body = svclink.sync.get_service("user").http_dispatch("GET", "/downstream")
    svclink.sync.get_publisher().publish("order.paid", {"order": 1}, exchange="traced_events")
    return JsonResponse(body)


async def atraced(request: HttpRequest) -> JsonResponse:
    user = await svclink.aio.get_service("user")
    body = await user.http_dispatch("GET", "/downstream")
    publisher = await svclink.aio.get_publisher()
    await publisher.publish("order.paid", {"order": 1}, exchange="traced_events")
    return JsonResponse(body)
