"""The Django app and middleware, through Django's test client (sync and async views) and a real
downstream service on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ..django_project import setup

setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core import checks  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402

import svclink  # noqa: E402
from svclink.context import Claims, sign, verify  # noqa: E402

from ..conftest import Side  # noqa: E402
from ..django_project.settings import SIGNING_KEY  # noqa: E402
from ..server import Reply, TestServer, closed_port  # noqa: E402

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def svclink_settings(server: TestServer, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "service_name": "api",
        "service_connections": ["user"],
        "service_hosts": {"user": server.url},
        "signing_key": SIGNING_KEY,
        "response_timeout": 5,
    }
    values.update(overrides)
    return values


@pytest.fixture
def downstream(server: TestServer) -> Iterator[TestServer]:
    """The ``user`` service the views call, with SVCLINK pointing at it."""
    server.route("GET", "/downstream", Reply(200, {"ok": True}))
    with override_settings(SVCLINK=svclink_settings(server)):
        yield server


def gateway_token(request_id: str, *, key: str = SIGNING_KEY, audience: str = "api", age: float = 0) -> str:
    now = int(time.time() - age)
    return sign(Claims("gateway", audience, request_id, now, now + 60, "55", {"role": "staff"}), key)


def get(side: Side, path: str, headers: dict[str, str], user: User | None = None) -> Any:
    """GET through Django's sync Client and sync view, or its AsyncClient and async view."""
    if side.runner is None:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client.get(path, headers=headers)

    async def go() -> Any:
        client = AsyncClient()
        if user is not None:
            await client.aforce_login(user)
        return await client.get("/a" + path.lstrip("/"), headers=headers)

    return side.runner.run(go())


def downstream_claims(server: TestServer) -> tuple[dict[str, str], Claims]:
    (req,) = server.calls("GET", "/downstream")
    return req.headers, verify(
        req.headers["x-svclink-context"], keys=[SIGNING_KEY], audience="user", now=time.time()
    )


def test_a_verified_caller_and_its_context_reach_the_view_and_go_on(
    side: Side, downstream: TestServer
) -> None:
    headers = {
        "X-Request-ID": "dj-1",
        "X-Svclink-Context": gateway_token("dj-1"),
        "traceparent": TP,
        "X-Svclink-Deadline-Ms": "4000",
    }
    response = get(side, "/whoami/", headers)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "dj-1"
    body = response.json()
    assert body["verified"] and body["caller"] == "gateway" and body["caller_user"] == "55"
    assert body["request_id"] == "dj-1" and body["user_id"] == "55" and body["has_deadline"]
    sent, claims = downstream_claims(downstream)
    assert sent["x-request-id"] == "dj-1" and sent["traceparent"] == TP
    assert 0 < int(sent["x-svclink-deadline-ms"]) <= 4000
    assert (claims.caller, claims.request_id, claims.user_id) == ("api", "dj-1", "55")
    assert dict(claims.user_claims) == {"role": "staff"}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "unsigned"),
        (gateway_token("dj-2", key="forged-key-0123456789abcdef"), "bad signature"),
        (gateway_token("dj-2", age=600), "expired"),
        (gateway_token("dj-2", audience="billing"), "wrong audience"),
        ("v1.not-a-token", "malformed"),
    ],
)
def test_an_unproved_caller_is_not_trusted(
    side: Side, downstream: TestServer, token: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-Request-ID": "dj-2", "X-Svclink-Caller": "gateway"}
    if token:
        headers["X-Svclink-Context"] = token
    caplog.set_level("DEBUG", logger="svclink")
    body = get(side, "/whoami/", headers).json()
    assert not body["verified"] and body["caller"] is None and body["reason"] == reason
    assert body["user_id"] is None
    sent, claims = downstream_claims(downstream)
    assert sent["x-request-id"] == "dj-2" and claims.user_id is None  # the claimed user never travels on
    logged = [r for r in caplog.records if r.name == "svclink.context" and reason in r.getMessage()]
    assert logged and logged[0].request_id == "dj-2"  # type: ignore[attr-defined]
    if token:
        assert token not in caplog.text and SIGNING_KEY not in caplog.text


@pytest.mark.parametrize(
    "token",
    [None, gateway_token("dj-3", key="forged-key-0123456789abcdef"), gateway_token("dj-3", age=600)],
)
def test_strict_mode_answers_401_and_the_view_never_runs(
    side: Side, server: TestServer, token: str | None
) -> None:
    headers = {"X-Request-ID": "dj-3"}
    if token:
        headers["X-Svclink-Context"] = token
    with override_settings(SVCLINK=svclink_settings(server, require_signed_context=True)):
        response = get(side, "/whoami/", headers)
        assert response.status_code == 401
        assert response.headers["X-Request-ID"] == "dj-3"
        assert response.json()["error_code"] == "svclink_unverified_caller"
        assert server.calls("GET", "/downstream") == []
        server.route("GET", "/downstream", Reply(200, {}))
        assert (
            get(
                side, "/whoami/", {"X-Request-ID": "dj-3", "X-Svclink-Context": gateway_token("dj-3")}
            ).status_code
            == 200
        )


def test_the_logged_in_user_goes_out_with_calls(side: Side, downstream: TestServer) -> None:
    user = User.objects.create_user(f"alice-{side.name}-{time.monotonic_ns()}")
    response = get(side, "/whoami/", {}, user=user)
    assert response.json()["user_id"] == str(user.pk)
    sent, claims = downstream_claims(downstream)
    assert claims.user_id == str(user.pk) and claims.caller == "api"
    assert sent["x-request-id"] == response.headers["X-Request-ID"]  # generated once, used throughout


def test_a_user_context_callable_replaces_the_default(side: Side, server: TestServer) -> None:
    server.route("GET", "/downstream", Reply(200, {}))
    values = {**svclink_settings(server), "user_context": "tests.django_project.views.user_from_header"}
    with override_settings(SVCLINK=values):
        get(side, "/whoami/", {"X-Test-User": "u-900"})
    _, claims = downstream_claims(server)
    assert claims.user_id == "u-900" and dict(claims.user_claims) == {"plan": "pro"}


def test_an_incoming_budget_is_honoured_and_clamped(side: Side, server: TestServer) -> None:
    server.route("GET", "/downstream", Reply(200, {}))
    with override_settings(SVCLINK=svclink_settings(server, max_deadline=2)):
        get(side, "/whoami/", {"X-Svclink-Deadline-Ms": "999999999"})
        (req,) = server.calls("GET", "/downstream")
        assert 0 < int(req.headers["x-svclink-deadline-ms"]) <= 2000
        body = get(side, "/whoami/", {"X-Svclink-Deadline-Ms": "0"}).json()
        assert body["downstream"] == "timeout"
        assert len(server.calls("GET", "/downstream")) == 1  # the spent budget sent nothing


def test_settings_are_validated_naming_the_field() -> None:
    with (
        pytest.raises(svclink.ConfigurationError) as info,
        override_settings(SVCLINK={"service_name": "Bad Name"}),
    ):
        pass
    assert info.value.field == "service_name"
    with (
        pytest.raises(svclink.ConfigurationError) as info,
        override_settings(SVCLINK={"user_context": "no.such.fn"}),
    ):
        pass
    assert info.value.field == "user_context"
    with pytest.raises(svclink.ConfigurationError) as info, override_settings(SVCLINK=["user"]):
        pass
    assert info.value.field == "SVCLINK"


def test_bad_settings_stop_django_at_start_up() -> None:
    code = (
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['svclink.contrib.django'],\n"
        "    SVCLINK={'service_connections': ['user'], 'required_service_connections': ['billing']})\n"
        "import django\n"
        "django.setup()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCLINK_", "DJANGO_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert (
        b"ConfigurationError: required_service_connections: billing not in service_connections" in done.stderr
    )


def test_the_system_check_reports_unreachable_required_services(server: TestServer) -> None:
    with override_settings(SVCLINK=svclink_settings(server, required_service_connections=["user"])):
        assert checks.run_checks(tags=["svclink"]) == []
    dead = f"http://127.0.0.1:{closed_port()}"
    with override_settings(
        SVCLINK=svclink_settings(server, service_hosts={"user": dead}, required_service_connections=["user"])
    ):
        (error,) = checks.run_checks(tags=["svclink"])
    assert error.id == "svclink.E001" and error.level == checks.ERROR
    assert "'user'" in error.msg


def test_the_response_has_a_request_id_even_without_one_in(side: Side, downstream: TestServer) -> None:
    response = get(side, "/whoami/", {"X-Request-ID": "bad id with spaces"})
    rid = response.headers["X-Request-ID"]
    assert rid != "bad id with spaces" and len(rid) == 32
    assert json.loads(response.content)["request_id"] == rid
