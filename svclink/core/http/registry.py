"""Declared services and where they live."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import ServiceNotDeclared
from ..locks import ForkSafeLock
from ..policy.breaker import State
from ..settings import Settings, get_settings
from .attempts import Answer, HTTPRequest
from .calls import Guard, reset_guard

S = TypeVar("S")

#: in-process answerers standing in for services, keyed by service name; installed by
#: :func:`svclink.testing.stub_service` and consulted by both drivers before any I/O
stubs: dict[str, Callable[[HTTPRequest], Answer]] = {}


#: the circuit breakers and retry budgets of every service object alive, on both sides, so
#: that the pytest plugin can start each test with them fresh (see :func:`reset_guards`)
live_guards: weakref.WeakSet[Guard] = weakref.WeakSet()


def reset_guards() -> None:
    """Close every live service's circuit breaker and empty its retry budget.

    The service objects themselves (and their pooled connections) are kept: only the
    state that one test's failures would carry into the next is dropped.
    """
    for guard in list(live_guards):
        reset_guard(guard)


def open_breakers(now: float) -> list[str]:
    """One sentence per service whose circuit breaker is open now (``now``: the monotonic clock)."""
    found = {}
    for guard in list(live_guards):
        breaker = guard.breaker
        if breaker is not None and breaker.state is State.OPEN:
            found[breaker.service] = breaker.retry_in(now)
    return [
        f"circuit breaker of {name!r} is open: calls are refused for {wait:.1f}s more"
        for name, wait in sorted(found.items())
    ]


def base_url(settings: Settings, name: str) -> str:
    """The base URL of declared service ``name``: its override, else ``host_pattern``.

    Raises :class:`ServiceNotDeclared` (listing the declared names) for any other name,
    so a typo never turns into a call to a host nobody meant.
    """
    if name not in settings.service_connections:
        raise ServiceNotDeclared(name, settings.service_connections)
    override = settings.service_hosts.get(name)
    if override is not None:
        return override
    return settings.host_pattern.format(service=name).rstrip("/")


class ServiceCache(Generic[S]):
    """One service object per name for the installed settings; rebuilt when settings change.

    Shared by ``svclink.sync.get_service`` and ``svclink.aio.get_service`` so that both
    sides cache, invalidate and report undeclared names the same way.
    """

    def __init__(self, factory: Callable[[str, Settings], S]) -> None:
        self._factory = factory
        self._lock = ForkSafeLock()
        self._services: dict[str, S] = {}
        self._settings: Settings | None = None

    def get(self, name: str) -> S:
        settings = get_settings()
        with self._lock:
            if settings is not self._settings:
                self._services.clear()
                self._settings = settings
            service = self._services.get(name)
            if service is None:
                service = self._services[name] = self._factory(name, settings)
            return service

    def drain(self) -> list[S]:
        """Forget every service and return them, so the caller can close them."""
        with self._lock:
            services = list(self._services.values())
            self._services.clear()
            return services
