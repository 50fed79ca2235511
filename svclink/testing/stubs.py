"""Service stubs: answer ``http_dispatch`` to a named service in-process, on both sides.

A stub replaces only the network. Everything else is the real svclink: endpoint
building and validation, headers, retries and their waits, error mapping, breaker and
budget. So a test that passes against a stub exercises the code that runs in production::

    with stub_service("user") as user:
        user.on("GET", "/api/v1/users/{id}", json={"id": 5, "name": "ada"})
        user.on("POST", "/api/v1/users/", status=409, json={"detail": "exists"})
        ...  # code under test calls svclink.sync / svclink.aio get_service("user")
        assert user.calls[0].path_params == {"id": "5"}
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from ..core.errors import TransportFailure
from ..core.http.attempts import Answer, HTTPRequest, NoResponse
from ..core.http.registry import base_url, stubs
from ..core.http.urls import fill_path
from ..core.settings import get_settings


@attrs.frozen
class StubRequest:
    """A call as the stub saw it: what the service would have received."""

    method: str
    path: str
    path_params: Mapping[str, str]
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, str] | None
    files: Mapping[str, Any] | None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@attrs.frozen
class StubReply:
    """One canned answer: a status with a JSON or raw body, or a transport failure."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: "connect", "reset" or "timeout": answer with no response at all
    fail: str | None = None

    def answer(self) -> Answer:
        if self.fail is not None:
            raise NoResponse(TransportFailure(self.fail), f"stubbed {self.fail} failure")
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.body is not None:
            body = self.body
        elif self.json is not None:
            body = json.dumps(self.json).encode()
            headers.setdefault("content-type", "application/json")
        else:
            body = b""
        return self.status, "", headers, body


Handler = Callable[[StubRequest], StubReply]


def _template_regex(endpoint: str) -> re.Pattern[str]:
    fill_path(endpoint, {f: "x" for f in re.findall(r"\{(\w+)\}", endpoint)})  # validates it
    parts = re.split(r"\{(\w+)\}", endpoint)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(f"^{pattern}$")


@attrs.define
class _Route:
    method: str
    regex: re.Pattern[str]
    replies: list[StubReply | Handler]
    hits: int = 0


class ServiceStub:
    """The in-process stand-in for one service; ``calls`` records every request, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[StubRequest] = []
        self._routes: dict[tuple[str, str], _Route] = {}
        self._lock = threading.Lock()

    def on(
        self,
        method: str,
        endpoint: str,
        handler: Handler | None = None,
        *,
        status: int = 200,
        json: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        fail: str | None = None,
    ) -> ServiceStub:
        """Answer ``method endpoint`` (a template like ``/users/{id}``).

        Calling ``on`` again for the same route queues another answer: answers are given
        in turn and the last one repeats, so ``on(..., status=503)`` then ``on(..., json=...)``
        is a dependency that fails once and recovers. ``handler`` computes the answer.
        """
        if fail is not None:
            TransportFailure(fail)  # a ValueError names a wrong kind at once
        reply: StubReply | Handler = handler or StubReply(status, json, body, dict(headers or {}), fail)
        key = (method.upper(), endpoint)
        with self._lock:
            if key in self._routes:
                self._routes[key].replies.append(reply)
            else:
                self._routes[key] = _Route(method.upper(), _template_regex(endpoint), [reply])
        return self

    def requests_to(self, method: str, path: str) -> list[StubRequest]:
        """The recorded calls to ``method path`` (a concrete path, not a template)."""
        return [c for c in self.calls if c.method == method.upper() and c.path == path]

    def __call__(self, request: HTTPRequest) -> Answer:
        url = urlsplit(request.url)
        path = unquote(url.path[len(urlsplit(base_url(get_settings(), self.name)).path) :])
        with self._lock:
            for route in self._routes.values():
                match = route.regex.match(path)
                if route.method == request.method and match:
                    reply = route.replies[min(route.hits, len(route.replies) - 1)]
                    route.hits += 1
                    break
            else:
                match, reply = None, StubReply(404, {"detail": f"no stub for {request.method} {path}"})
            recorded = StubRequest(
                request.method,
                path,
                match.groupdict() if match else {},
                parse_qs(url.query, keep_blank_values=True),
                {k.lower(): v for k, v in request.headers.items()},
                request.content or b"",
                request.form,
                request.files,
            )
            self.calls.append(recorded)
        if callable(reply) and not isinstance(reply, StubReply):
            reply = reply(recorded)
        return reply.answer()


@contextlib.contextmanager
def stub_service(name: str) -> Iterator[ServiceStub]:
    """Answer every call to service ``name`` in-process, on both sides, for the ``with`` block."""
    stub = ServiceStub(name)
    previous = stubs.get(name)
    stubs[name] = stub
    try:
        yield stub
    finally:
        if previous is None:
            stubs.pop(name, None)
        else:
            stubs[name] = previous
