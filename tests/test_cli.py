"""The svclink command line, run as a user runs it: a subprocess with its exit code and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .server import Reply, TestServer, closed_port


def svclink_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    return subprocess.run(
        [sys.executable, "-m", "svclink", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def test_demo_runs_and_tells_what_it_did() -> None:
    result = svclink_cli("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "user service listening on http://127.0.0.1:" in out
    assert "[sync] GET /api/v1/users/1" in out and "'name': 'ada'" in out
    assert "raised NotFound(status=404" in out
    assert "[aio ] 20 concurrent GETs" in out and "20 answers" in out
    assert "Traceback" not in out + result.stderr


def test_call_prints_body_and_sends_query_headers_and_json(server: TestServer) -> None:
    server.route("POST", "/api/v1/users/", Reply(201, {"id": 7}))
    env = {"SVCLINK_SERVICE_CONNECTIONS": "user", "SVCLINK_SERVICE_USER_URL": server.url}
    result = svclink_cli(
        "call", "user", "POST", "/api/v1/users/", "-q", "a=1", "-q", "a=2", "-H", "X-Team: core",
        "--json", '{"name": "ada"}', env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": 7}
    (req,) = server.calls("POST", "/api/v1/users/")
    assert (
        req.query == {"a": ["1", "2"]} and req.headers["x-team"] == "core" and req.json() == {"name": "ada"}
    )


def test_call_error_prints_fields_and_exits_non_zero(server: TestServer) -> None:
    server.route(
        "GET", "/missing", Reply(404, {"message": "gone", "error_code": {"name": "GONE", "value": 1}})
    )
    result = svclink_cli("call", "user", "GET", "/missing", "--url", server.url)
    assert result.returncode == 1
    assert "NotFound" in result.stderr and '"error_code": "GONE"' in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_arguments_give_usage_errors_not_tracebacks() -> None:
    for args in (["call", "user", "GET"], ["call", "user", "GET", "/x", "-q", "novalue"], ["frobnicate"]):
        result = svclink_cli(*args)
        assert result.returncode == 2, args
        assert "usage: svclink" in result.stderr and "Traceback" not in result.stderr
    result = svclink_cli("call", "user", "GET", "//evil/x", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1 and "endpoint must be a path" in result.stderr


def test_check_reports_unreachable_required_service_and_bad_settings(server: TestServer) -> None:
    env = {
        "SVCLINK_SERVICE_CONNECTIONS": "user,billing",
        "SVCLINK_REQUIRED_SERVICE_CONNECTIONS": "user,billing",
        "SVCLINK_SERVICE_USER_URL": server.url,
        "SVCLINK_SERVICE_BILLING_URL": f"http://127.0.0.1:{closed_port()}",
    }
    result = svclink_cli("check", env=env)
    assert result.returncode == 1
    assert "'billing'" in result.stdout and "not reachable" in result.stdout and "'user'" not in result.stdout
    result = svclink_cli("check", env={"SVCLINK_RESPONSE_TIMEOUT": "soon"})
    assert result.returncode == 1 and "response_timeout" in result.stderr
