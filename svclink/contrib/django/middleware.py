"""``SvclinkMiddleware``: binds the request context for the view, sync or async.

For each request it reads the incoming headers through :func:`svclink.context.incoming`
(request id, trace, deadline budget, signed caller context), exposes the verdict as
``request.svclink`` (a :class:`svclink.context.Caller`, whose ``tls_subject`` is the
subject of a verified client certificate: see :doc:`/tls`), binds the context while the view
runs (so every call and event the view makes carries it), and puts the request id on
the response. With ``require_signed_context`` an unverified caller gets a 401 and the
view never runs.

The user the view acts for goes out with its calls: by default the authenticated
Django user's primary key (put this middleware after ``AuthenticationMiddleware``), else
the user the verified caller vouched for. ``SVCLINK["user_context"]`` replaces the
default with a callable ``(request) -> None | id | (id, claims) | svclink.context.User``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from ...core.context.incoming import Incoming, incoming, log_incoming, rejection
from ...core.context.outgoing import REQUEST_ID_HEADER
from ...core.context.peer import asgi_tls_subject, client_subject
from ...core.context.value import as_user, bind, with_user
from ...core.settings import get_settings
from . import conf


def default_user_context(request: HttpRequest) -> str | None:
    """The authenticated Django user's primary key, as a string; None for anonymous requests."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)


async def _default_user_context_async(request: HttpRequest) -> str | None:
    auser = getattr(request, "auser", None)
    if auser is None:
        return None
    user = await auser()
    if not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)


def _read(request: HttpRequest) -> Incoming:
    """The incoming verdict, with the verified client certificate's subject on the caller."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    settings = get_settings()
    result = incoming(headers, settings=settings, now=time.monotonic(), wall=time.time())
    log_incoming(result)
    scope = getattr(request, "scope", None)  # under ASGI: the server's verdict on the certificate
    verified = asgi_tls_subject(scope) if isinstance(scope, dict) else None
    peer = request.META.get("REMOTE_ADDR")
    subject = client_subject(settings, verified=verified, peer=peer, headers=headers)
    if subject is not None:
        result = attrs.evolve(result, caller=attrs.evolve(result.caller, tls_subject=subject))
    return result


def _reject(result: Incoming) -> HttpResponse:
    status, headers, body = rejection(result)
    return HttpResponse(body, status=status, headers=headers)


def _finish(response: HttpResponseBase, request_id: str) -> HttpResponseBase:
    if REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


class SvclinkMiddleware:
    """Django middleware (sync and async) that binds svclink's request context for each request."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        result = _read(request)
        if result.rejected:
            return _reject(result)
        request.svclink = result.caller
        custom = conf.user_context()
        user = as_user((custom or default_user_context)(request))
        with bind(with_user(result.context, user)) as context:
            response = self.get_response(request)
        return _finish(response, context.request_id)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        result = _read(request)
        if result.rejected:
            return _reject(result)
        request.svclink = result.caller
        user = as_user(await self._user(request))
        with bind(with_user(result.context, user)) as context:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
            response = await get_response(request)
        return _finish(response, context.request_id)

    @staticmethod
    async def _user(request: HttpRequest) -> Any:
        custom = conf.user_context()
        if custom is None:
            return await _default_user_context_async(request)
        if iscoroutinefunction(custom):
            return await custom(request)
        return await sync_to_async(custom)(request)
