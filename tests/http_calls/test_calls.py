"""HTTP calls that succeed: parameters, bodies, responses, headers and redirects, on both sides."""

from __future__ import annotations

import asyncio
import gzip
import re
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

import svclink
import svclink.aio
import svclink.sync
from svclink.core.context.value import bind
from svclink.core.http.responses import Response

from ..conftest import Side, use_server
from ..server import Reply, TestServer, closed_port


def test_get_with_query_and_path_params(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/api/v1/users/5", Reply(200, {"id": 5}))
    body = side.call(
        "user", "GET", "/api/v1/users/{id}", path_params={"id": 5},
        query_params={"q": "a b&c", "tag": ["x", "y"], "active": True, "deleted": False, "none": None},
    )  # fmt: skip
    assert body == {"id": 5}
    (req,) = user_service.calls("GET", "/api/v1/users/5")
    assert req.query == {"q": ["a b&c"], "tag": ["x", "y"], "active": ["true"], "deleted": ["false"]}


@pytest.mark.parametrize(
    ("value", "raw"),
    [("a/b", "a%2Fb"), ("../admin", "..%2Fadmin"), ("%2e%2e", "%252e%252e"), ("x y", "x%20y")],
)
def test_a_path_param_stays_one_encoded_segment(
    side: Side, user_service: TestServer, value: str, raw: str
) -> None:
    user_service.route("GET", f"/api/v1/users/{raw}/orders", Reply(200, {"ok": True}))
    assert side.call("user", "GET", "/api/v1/users/{id}/orders", path_params={"id": value}) == {"ok": True}
    assert [r.path for r in user_service.requests] == [f"/api/v1/users/{raw}/orders"]


def test_json_body(side: Side, user_service: TestServer) -> None:
    user_service.route("POST", "/api/v1/users/", Reply(201, {"id": 7}))
    uid = uuid.uuid4()
    body, status = side.call(
        "user", "POST", "/api/v1/users/", payload={"name": "é", "ref": uid}, include_status_code=True
    )
    assert (body, status) == ({"id": 7}, 201)
    (req,) = user_service.calls("POST", "/api/v1/users/")
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {"name": "é", "ref": str(uid)}


def test_multipart_body(side: Side, user_service: TestServer) -> None:
    user_service.route("POST", "/api/v1/avatars/", Reply(201, {"stored": True}))
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    result = side.call(
        "user", "POST", "/api/v1/avatars/", payload={"user": "1", "size": 2},
        files={"avatar": ("a.png", png, "image/png"), "note": ("n.txt", b"hello")},
    )  # fmt: skip
    assert result == {"stored": True}
    (req,) = user_service.calls("POST", "/api/v1/avatars/")
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = req.parts()
    assert set(parts) == {"user", "size", "avatar", "note"}
    assert parts["user"].content == b"1" and parts["user"].filename is None
    assert parts["size"].content == b"2"
    assert (parts["avatar"].filename, parts["avatar"].content, parts["avatar"].content_type) == (
        "a.png", png, "image/png",
    )  # fmt: skip
    assert (parts["note"].filename, parts["note"].content) == ("n.txt", b"hello")


def test_204_gives_none(side: Side, user_service: TestServer) -> None:
    user_service.route("DELETE", "/api/v1/users/5", Reply(204))
    assert side.call("user", "DELETE", "/api/v1/users/5") is None
    assert side.call("user", "DELETE", "/api/v1/users/5", include_status_code=True) == (None, 204)


def test_head(side: Side, user_service: TestServer) -> None:
    user_service.route("HEAD", "/api/v1/users/5", Reply(200, {"id": 5}))
    assert side.call("user", "HEAD", "/api/v1/users/5") is None


def test_a_non_json_200_raises_response_decode_error(side: Side, user_service: TestServer) -> None:
    page = b"<html><body>" + b"maintenance " * 100_000 + b"</body></html>"
    user_service.route("GET", "/page", Reply(200, body=page, headers={"Content-Type": "text/html"}))
    with pytest.raises(svclink.ResponseDecodeError) as info:
        side.call("user", "GET", "/page")
    err = info.value
    assert err.status_code == 200
    assert (
        isinstance(err.body, str) and err.body.startswith("<html><body>maintenance") and len(err.body) <= 501
    )
    assert len(str(err)) < 1000
    assert len(user_service.calls("GET", "/page")) == 1  # a decode error is not retried


def test_raw_response(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/page", Reply(404, body=b"<p>nope</p>", headers={"Content-Type": "text/html"}))
    response = side.call("user", "GET", "/page", raw_response=True)
    assert isinstance(response, Response)
    assert (response.status_code, response.content, response.text) == (404, b"<p>nope</p>", "<p>nope</p>")
    assert response.headers["content-type"] == "text/html"
    assert response.url == user_service.url + "/page"


def test_standard_headers(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/h", Reply(200, {}))
    side.call("user", "GET", "/h")
    side.call("user", "GET", "/h", headers={"X-Tenant": "acme"})
    first, second = user_service.calls("GET", "/h")
    assert first.headers["user-agent"] == f"svclink/{svclink.__version__}"
    assert first.headers["x-svclink-caller"] == "api"
    assert first.headers["accept"] == "application/json"
    assert second.headers["x-tenant"] == "acme"
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids[0] != ids[1]


def test_no_caller_header_without_a_service_name(side: Side, server: TestServer) -> None:
    use_server(server, service_name=None)
    server.route("GET", "/h", Reply(200, {}))
    side.call("user", "GET", "/h")
    assert "x-svclink-caller" not in server.requests[0].headers


def test_the_bound_request_id_is_sent_and_reported(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/h", Reply(200, {}))
    user_service.route("GET", "/missing", Reply(404, {"detail": "Not found."}))
    with bind(request_id="req-from-view"):
        side.call("user", "GET", "/h")
        with pytest.raises(svclink.NotFound) as info:
            side.call("user", "GET", "/missing")
    assert [r.headers["x-request-id"] for r in user_service.requests] == ["req-from-view"] * 2
    assert info.value.request_id == "req-from-view"


def test_a_same_origin_redirect_is_followed(side: Side, user_service: TestServer) -> None:
    user_service.route("GET", "/old", Reply(301, headers={"Location": "/new?x=1"}))
    user_service.route("GET", "/new", Reply(200, {"moved": True}))
    assert side.call("user", "GET", "/old") == {"moved": True}
    assert user_service.calls("GET", "/new")[0].query == {"x": ["1"]}


@pytest.fixture
def elsewhere() -> Iterator[TestServer]:
    s = TestServer().start()
    yield s
    s.stop()


def test_a_redirect_to_another_origin_is_refused(
    side: Side, user_service: TestServer, elsewhere: TestServer
) -> None:
    elsewhere.route("GET", "/steal", Reply(200, {"stolen": True}))
    user_service.route("GET", "/go", Reply(302, headers={"Location": elsewhere.url + "/steal"}))
    with pytest.raises(svclink.RedirectNotFollowed) as info:
        side.call("user", "GET", "/go")
    assert info.value.status_code == 302
    assert elsewhere.requests == []
    assert len(user_service.requests) == 1


def test_an_undeclared_service_lists_the_declared_ones(side: Side, user_service: TestServer) -> None:
    with pytest.raises(svclink.ServiceNotDeclared) as info:
        side.call("billing", "GET", "/x")
    assert isinstance(info.value, RuntimeError)
    assert "'billing'" in str(info.value) and "user" in str(info.value)
    assert user_service.requests == []


def test_the_service_object_is_cached_per_name(side: Side, user_service: TestServer) -> None:
    if side.name == "sync":
        assert svclink.sync.get_service("user") is svclink.sync.get_service("user")
        return

    async def twice() -> bool:
        return await svclink.aio.get_service("user") is await svclink.aio.get_service("user")

    assert asyncio.run(twice())


def test_proxies_from_the_environment_are_ignored(
    side: Side, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server.route("GET", "/x", Reply(200, {"direct": True}))
    use_server(server)
    assert side.call("user", "GET", "/x") == {"direct": True}
    side.close_pools()
    use_server(server, trust_env=True, response_timeout=2, retry=svclink.RetryPolicy(total=0))
    with pytest.raises(svclink.ServiceUnavailable):
        side.call("user", "GET", "/x")
    assert len(server.requests) == 1


def test_a_proxy_is_skipped_for_hosts_in_no_proxy(
    side: Side, server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "localhost,127.0.0.1")
    server.route("GET", "/x", Reply(200, {"direct": True}))
    use_server(server, trust_env=True, retry=svclink.RetryPolicy(total=0))
    assert side.call("user", "GET", "/x") == {"direct": True}


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_responses_are_asked_for_and_decoded(
    side: Side, user_service: TestServer, encoding: str, compress: Any
) -> None:
    body = compress(b'{"name":"ada"}')
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    user_service.route("GET", "/z", Reply(200, body=body, headers=headers))
    assert side.call("user", "GET", "/z") == {"name": "ada"}
    (req,) = user_service.calls("GET", "/z")
    assert req.headers["accept-encoding"] == "gzip, deflate"


def test_cookies_a_service_sets_are_not_sent_back(side: Side, user_service: TestServer) -> None:
    """Calls between services are stateless: one caller's cookie must not reach the next call."""
    user_service.route("GET", "/login", Reply(200, {}, headers={"Set-Cookie": "sessionid=s3; Path=/"}))
    user_service.route("GET", "/me", Reply(200, {}))
    side.call("user", "GET", "/login")
    side.call("user", "GET", "/me")
    (req,) = user_service.calls("GET", "/me")
    assert "cookie" not in req.headers


def test_check_reports_unreachable_required_services(server: TestServer) -> None:
    port = closed_port()
    svclink.configure(
        service_connections=["user", "billing", "extra"],
        required_service_connections=["user", "billing"],
        service_hosts={
            "user": server.url,
            "billing": f"http://127.0.0.1:{port}",
            "extra": "http://127.0.0.1:1",
        },
    )
    problems = svclink.check()
    assert len(problems) == 1
    assert "'billing'" in problems[0] and f"127.0.0.1:{port}" in problems[0]
    svclink.configure(
        service_connections=["user"],
        required_service_connections=["user"],
        service_hosts={"user": server.url},
    )
    assert svclink.check() == []
    assert server.requests == []  # check() only connects


@pytest.fixture
def netrc_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A ``.netrc`` (named by ``$NETRC``) with credentials for 127.0.0.1, where the test server is."""
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1\nlogin alice\npassword s3cret\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


ALICE = "Basic YWxpY2U6czNjcmV0"  # alice:s3cret


def test_netrc_credentials_are_sent_only_with_trust_env(
    side: Side, server: TestServer, netrc_file: Any
) -> None:
    server.route("GET", "/x", Reply(200, {}))
    use_server(server)
    side.call("user", "GET", "/x")
    side.close_pools()
    use_server(server, trust_env=True)
    side.call("user", "GET", "/x")
    assert [r.headers.get("authorization") for r in server.requests] == [None, ALICE]


def test_a_calls_own_authorization_wins_over_netrc(side: Side, server: TestServer, netrc_file: Any) -> None:
    """requests alone would replace the caller's header with the .netrc credentials."""
    server.route("GET", "/x", Reply(200, {}))
    use_server(server, trust_env=True)
    side.call("user", "GET", "/x", headers={"authorization": "Bearer t0ken"})
    assert [r.headers.get("authorization") for r in server.requests] == ["Bearer t0ken"]


def test_a_netrc_without_the_host_or_unreadable_sends_nothing(
    side: Side, server: TestServer, netrc_file: Any
) -> None:
    server.route("GET", "/x", Reply(200, {}))
    netrc_file.write_text("machine elsewhere.example\nlogin bob\npassword pw\n")
    use_server(server, trust_env=True)
    side.call("user", "GET", "/x")
    side.close_pools()
    netrc_file.write_text("bogus 127.0.0.1\n")  # malformed: the call goes out all the same
    use_server(server, trust_env=True)
    side.call("user", "GET", "/x")
    assert [r.headers.get("authorization") for r in server.requests] == [None, None]
