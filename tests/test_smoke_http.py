from __future__ import annotations

import pytest

import svclink

from .conftest import Side
from .server import Reply, TestServer


def test_get_with_params(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/api/v1/users/5", Reply(200, {"id": 5}))
    body = side.call("user", "GET", "/api/v1/users/{id}", path_params={"id": 5}, query_params={"q": "x"})
    assert body == {"id": 5}
    (req,) = user_service.calls("GET", "/api/v1/users/5")
    assert req.query == {"q": ["x"]}
    assert req.headers["x-svclink-caller"] == "api"


def test_503_then_200_is_retried(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/flaky", Reply(503), Reply(200, {"ok": True}))
    assert side.call("user", "GET", "/flaky") == {"ok": True}
    assert len(user_service.calls("GET", "/flaky")) == 2


def test_404_maps(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/nope", Reply(404, {"detail": "Not found."}))
    with pytest.raises(svclink.NotFound) as info:
        side.call("user", "GET", "/nope")
    assert info.value.message == "Not found."
    assert info.value.status_code == 404
