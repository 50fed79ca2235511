"""Calls written for Insanic's ``Service.http_dispatch``, run unchanged on both sides against a local server.

Insanic users pass ``files={}``, ``payload={}``, ``query_params={}`` and ``headers={}`` as
"nothing", read ``service.service_name``, ``service.url``, ``host`` and ``port``, and may
set ``host``/``port`` by hand; the suite is those calls as they appear in Insanic code.
"""

from __future__ import annotations

from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync
from svclink.core.context.value import bind

from ..conftest import Side, use_server
from ..server import Reply, TestServer

#: (method, http_dispatch keyword arguments as Insanic code passes them, what the server must receive)
SUITE: list[tuple[str, dict[str, Any], bytes | None]] = [
    ("GET", {"query_params": {"q": "x"}, "payload": {}, "files": {}, "headers": {}}, None),
    ("GET", {"query_params": {}, "payload": None, "files": None}, None),
    ("GET", {"payload": [], "files": {}, "propagate_error": False}, None),
    ("HEAD", {"payload": {}, "files": {}}, None),
    ("DELETE", {"payload": {}, "files": {}}, b"{}"),
    ("POST", {"payload": {"name": "a"}, "files": {}, "headers": {}}, b'{"name":"a"}'),
    ("PUT", {"payload": {"name": "b"}, "files": None, "include_status_code": False}, b'{"name":"b"}'),
    ("PATCH", {"payload": {"name": "c"}, "files": {}, "propagate_error": True}, b'{"name":"c"}'),
]


@pytest.mark.parametrize(("method", "kwargs", "body"), SUITE)
def test_insanic_style_calls(
    side: Side, server: TestServer, method: str, kwargs: dict[str, Any], body: bytes | None
) -> None:
    use_server(server)
    server.route(method, "/api/v1/users/", Reply(200, {"ok": True}))
    result, status = side.call("user", method, "/api/v1/users/", include_status_code=True, **{
        k: v for k, v in kwargs.items() if k != "include_status_code"
    })  # fmt: skip
    assert status == 200 and result == (None if method == "HEAD" else {"ok": True})
    (request,) = server.calls(method, "/api/v1/users/")
    if body is None:
        assert request.body == b"" and "content-type" not in request.headers
    else:
        assert request.body == body and request.headers["content-type"] == "application/json"
    if kwargs.get("query_params"):
        assert request.query == {"q": ["x"]}


def test_files_with_an_empty_mapping_beside_a_payload_send_json_and_real_files_send_a_form(
    side: Side, server: TestServer
) -> None:
    use_server(server)
    server.route("POST", "/api/v1/avatars/", Reply(201, {"stored": True}))
    side.call("user", "POST", "/api/v1/avatars/", payload={"user": "1"}, files={})
    side.call("user", "POST", "/api/v1/avatars/", payload={"user": "1"}, files={"avatar": ("a.png", b"PNG")})
    as_json, as_form = server.calls("POST", "/api/v1/avatars/")
    assert as_json.json() == {"user": "1"}
    assert as_form.headers["content-type"].startswith("multipart/form-data")
    assert as_form.parts()["avatar"].content == b"PNG"


def test_a_payload_on_a_get_is_refused_before_any_io_pointing_to_query_params(
    side: Side, server: TestServer
) -> None:
    use_server(server)
    for method in ("GET", "HEAD"):
        with pytest.raises(svclink.InvalidRequest, match=rf"a {method} request has no body.*query_params"):
            side.call("user", method, "/api/v1/users/", payload={"q": "x"})
    with pytest.raises(svclink.InvalidRequest, match="files must be a mapping"):
        side.call("user", "POST", "/api/v1/users/", files=[("a", b"x")])
    assert server.requests == []


def test_propagate_error_false_returns_the_error_body_as_insanic_did(side: Side, server: TestServer) -> None:
    use_server(server)
    error = {"message": "Not found", "description": "no such user", "error_code": {"name": "x", "value": 1}}
    server.route("GET", "/api/v1/users/9", Reply(404, error))
    insanic_defaults = {"payload": {}, "files": {}, "propagate_error": False}
    body, status = side.call("user", "GET", "/api/v1/users/9", include_status_code=True, **insanic_defaults)
    assert (body, status) == (error, 404)


def _service(side: Side) -> Any:
    if side.runner is None:
        return svclink.sync.get_service("user")
    return side.runner.run(svclink.aio.get_service("user"))


def test_service_name_url_host_and_port_and_read_only_address(side: Side, server: TestServer) -> None:
    use_server(server)
    service = _service(side)
    assert service.service_name == "user"
    assert service.url == server.url
    assert (service.host, service.port) == ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    for name, value in (("host", "other-host"), ("port", 9)):
        with pytest.raises(AttributeError, match=rf"user\.{name} is read-only.*service_hosts"):
            setattr(service, name, value)


def test_insanic_headers_sends_the_request_id_under_insanics_name_too(side: Side, server: TestServer) -> None:
    use_server(server, insanic_headers=True)
    server.route("GET", "/api/v1/users/", Reply(200, {}))
    with bind(request_id="req-from-insanic-fleet"):
        side.call("user", "GET", "/api/v1/users/")
    side.call("user", "GET", "/api/v1/users/", headers={"X-Insanic-Request-ID": "given-by-caller"})
    bound, given = server.calls("GET", "/api/v1/users/")
    assert bound.headers["x-insanic-request-id"] == bound.headers["x-request-id"] == "req-from-insanic-fleet"
    assert given.headers["x-insanic-request-id"] == "given-by-caller"
    use_server(server)  # off by default
    side.call("user", "GET", "/api/v1/users/")
    assert "x-insanic-request-id" not in server.requests[-1].headers
