"""Declared services, their addresses, and the per-name service cache shared by both sides."""

from __future__ import annotations

import threading

import pytest

import svclink
from svclink.core.http.registry import ServiceCache, base_url
from svclink.core.settings import Settings


def test_base_url_prefers_the_override_then_the_pattern() -> None:
    s = Settings(
        service_connections=["user", "billing"],
        host_pattern="https://{service}.internal:8443/",
        service_hosts={"user": "http://127.0.0.1:8001/"},
    )
    assert base_url(s, "user") == "http://127.0.0.1:8001"
    assert base_url(s, "billing") == "https://billing.internal:8443"


def test_an_undeclared_name_lists_the_declared_ones() -> None:
    s = Settings(service_connections=["user", "billing"])
    with pytest.raises(svclink.ServiceNotDeclared) as info:
        base_url(s, "usr")
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.name == "usr"
    assert err.declared == ("user", "billing")
    assert "'usr'" in str(err)
    assert "user, billing" in str(err)


def test_with_nothing_declared_the_message_says_so() -> None:
    with pytest.raises(svclink.ServiceNotDeclared, match=r"declared: \(none\)"):
        base_url(Settings(), "user")


class Thing:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name, self.settings = name, settings


def test_one_object_per_name_for_the_installed_settings() -> None:
    svclink.configure(service_connections=["user", "billing"])
    made: list[str] = []

    def factory(name: str, settings: Settings) -> Thing:
        made.append(name)
        return Thing(name, settings)

    cache = ServiceCache(factory)
    user = cache.get("user")
    assert cache.get("user") is user
    assert cache.get("billing") is not user
    assert made == ["user", "billing"]
    assert user.settings is svclink.get_settings()


def test_new_settings_give_new_objects() -> None:
    svclink.configure(service_connections=["user"], response_timeout=1)
    cache = ServiceCache(Thing)
    old = cache.get("user")
    svclink.configure(service_connections=["user"], response_timeout=2)
    new = cache.get("user")
    assert new is not old
    assert new.settings.response_timeout == 2


def test_drain_returns_everything_and_forgets_it() -> None:
    svclink.configure(service_connections=["user", "billing"])
    cache = ServiceCache(Thing)
    objs = {cache.get("user"), cache.get("billing")}
    assert set(cache.drain()) == objs
    assert cache.drain() == []
    assert cache.get("user") not in objs


def test_threads_racing_for_a_name_share_one_object() -> None:
    svclink.configure(service_connections=["user"])
    made: list[int] = []

    def factory(name: str, settings: Settings) -> Thing:
        made.append(1)
        return Thing(name, settings)

    cache = ServiceCache(factory)
    barrier = threading.Barrier(16)
    got: list[Thing] = []

    def grab() -> None:
        barrier.wait()
        got.append(cache.get("user"))

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1
    assert len({id(g) for g in got}) == 1
