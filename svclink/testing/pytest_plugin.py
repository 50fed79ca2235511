"""pytest fixtures for code that uses svclink (installed as the ``svclink`` pytest plugin).

- ``svclink_stub``: ``user = svclink_stub("user")`` answers every call to service
  ``user`` in-process for the test (declaring it if the settings do not);
- ``svclink_broker``: switches events to the in-process ``memory://`` broker for the
  test and returns it, empty, for assertions.

Settings changed by either fixture are put back after the test. And every test starts
with every service's circuit breaker closed and its retry budget full, so that one
test's failures (a breaker opened against a dependency that was down on purpose) never
decide another's outcome, whatever the order the tests run in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import attrs
import pytest

from ..core import settings as settings_module
from ..core.http.registry import reset_guards
from .memory import MemoryBroker, get_broker, reset
from .stubs import ServiceStub, stub_service


@pytest.fixture
def svclink_stub() -> Iterator[Callable[[str], ServiceStub]]:
    """A factory of service stubs, all removed after the test."""
    saved = settings_module.get_settings()
    with contextlib.ExitStack() as stack:

        def make(name: str) -> ServiceStub:
            current = settings_module.get_settings()
            if name not in current.service_connections:
                declared = (*current.service_connections, name)
                settings_module.install(attrs.evolve(current, service_connections=declared))
            return stack.enter_context(stub_service(name))

        yield make
    settings_module.install(saved)


@pytest.fixture
def svclink_broker() -> Iterator[MemoryBroker]:
    """The in-process broker, empty, with svclink's events routed to it for this test."""
    saved = settings_module.get_settings()
    settings_module.install(attrs.evolve(saved, amqp_url="memory://"))
    reset()
    try:
        yield get_broker()
    finally:
        reset()
        settings_module.install(saved)


@pytest.fixture(autouse=True)
def _svclink_fresh_guards() -> Iterator[None]:
    """Every service's circuit breaker closed and retry budget full, before each test."""
    reset_guards()
    yield
