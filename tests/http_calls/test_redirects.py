"""Redirects against a real Django project under uvicorn: APPEND_SLASH, as users meet it.

Django's CommonMiddleware answers ``POST /users`` with a 301 to ``/users/``. Followed as
a GET, the call would return the list of users with a 200: no user created, the payload
dropped, no error. svclink refuses it with RedirectNotFollowed naming the Location; a
GET or HEAD follows; a 307/308 keeps the method and the body.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import svclink

from ..conftest import Side, use_server
from ..server import Recorded, Reply, TestServer
from ..services import Uvicorn, clean_env


@pytest.fixture(scope="module")
def django_server() -> Iterator[Uvicorn]:
    server = Uvicorn("tests.django_project.asgi:application", clean_env(), lifespan="off")
    yield server
    server.stop()


def use_django(server: Uvicorn) -> None:
    svclink.configure(service_name="api", service_connections=["user"], service_hosts={"user": server.url})


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_append_slash_after_a_post_raises_naming_the_location(
    side: Side, django_server: Uvicorn, method: str
) -> None:
    use_django(django_server)
    before = side.call("user", "GET", "/users/")
    with pytest.raises(svclink.RedirectNotFollowed) as info:
        side.call("user", method, "/users", payload={"name": "ann"})
    assert info.value.status_code == 301 and info.value.method == method
    assert f"Location {django_server.url}/users/" in str(info.value)
    assert side.call("user", "GET", "/users/") == before  # nothing was created by a GET in disguise


def test_append_slash_after_a_get_is_followed(side: Side, django_server: Uvicorn) -> None:
    use_django(django_server)
    created = side.call("user", "POST", "/users/", payload={"name": "bob"}, include_status_code=True)
    assert created[1] == 201
    assert created[0] in side.call("user", "GET", "/users")


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_keeps_the_method_and_the_body(
    side: Side, user_service: TestServer, status: int
) -> None:
    user_service.route("POST", "/old", Reply(status, headers={"Location": "/new"}))
    user_service.route("POST", "/new", lambda rec: Reply(201, {"got": rec.json()}))
    assert side.call("user", "POST", "/old", payload={"a": 1}) == {"got": {"a": 1}}
    moved = user_service.calls("POST", "/new")
    assert len(moved) == 1 and moved[0].headers["content-type"] == "application/json"


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_301_302_303_after_a_post_is_not_followed(
    side: Side, user_service: TestServer, status: int
) -> None:
    user_service.route("POST", "/submit", Reply(status, headers={"Location": "/done"}))
    with pytest.raises(svclink.RedirectNotFollowed, match=r"Location .*/done"):
        side.call("user", "POST", "/submit", payload={"a": 1})
    assert [r.path for r in user_service.requests] == ["/submit"]


def _echo(rec: Recorded) -> Reply:
    return Reply(200, {"method": rec.method})


def test_a_redirect_to_another_origin_is_refused_for_every_method(side: Side, server: TestServer) -> None:
    other = TestServer().start()
    try:
        use_server(server)
        server.route("PUT", "/go", Reply(308, headers={"Location": other.url + "/x"}))
        other.route("PUT", "/x", _echo)
        with pytest.raises(svclink.RedirectNotFollowed, match="another origin"):
            side.call("user", "PUT", "/go", payload={})
        assert other.requests == []
    finally:
        other.stop()
