"""The pytest plugin gives every test fresh circuit breakers and retry budgets.

A user's suite declares a service once (settings or a session fixture). One test makes
the dependency fail until its breaker opens; the next expects it to answer. Without the
plugin's reset, the second test fails with ``CircuitOpen ... next probe in 4.9s`` when
run after the first, and passes alone. The suite below is run as a user runs theirs: by
pytest in its own process, with svclink's plugin found through its entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import Side
from ..services import ROOT

USER_SUITE = textwrap.dedent(
    """
    import asyncio
    import pytest
    import svclink, svclink.sync, svclink.aio
    from tests.server import Reply, TestServer

    @pytest.fixture(scope="session")
    def dependency():
        server = TestServer().start()
        svclink.configure(service_connections=["user"], service_hosts={"user": server.url})
        yield server
        server.stop()

    def call(path):
        if SIDE == "sync":
            return svclink.sync.get_service("user").http_dispatch("GET", path, retry_count=0)
        async def go():
            user = await svclink.aio.get_service("user")
            return await user.http_dispatch("GET", path, retry_count=0)
        return asyncio.run(go())

    def test_1_the_dependency_is_down(dependency):
        dependency.route("GET", "/x", Reply(503))
        for _ in range(5):
            with pytest.raises(svclink.ServerError):
                call("/x")
        with pytest.raises(svclink.CircuitOpen):
            call("/x")

    def test_2_the_dependency_is_up(dependency):
        dependency.route("GET", "/x", Reply(200, {"ok": True}))
        assert call("/x") == {"ok": True}
    """
)


def test_a_breaker_opened_in_one_test_is_closed_in_the_next(side: Side, tmp_path: Path) -> None:
    (tmp_path / "test_user_suite.py").write_text(f"SIDE = {side.name!r}\n" + USER_SUITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")}
    env["PYTHONPATH"] = ROOT
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user_suite.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "2 passed" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("policy", ["breaker", "budget"])
def test_reset_guards_closes_breakers_and_empties_budgets(policy: str) -> None:
    import svclink
    import svclink.sync
    from svclink.core.http.registry import reset_guards
    from svclink.core.policy.breaker import State

    svclink.configure(service_connections=["user"], service_hosts={"user": "http://127.0.0.1:9"})
    guard = svclink.sync.get_service("user").guard
    assert guard.breaker is not None and guard.budget is not None
    if policy == "breaker":
        for n in range(10):
            guard.breaker.failed(float(n))
        assert guard.breaker.state is State.OPEN
    else:
        while guard.budget.try_retry(0.0):
            pass
    reset_guards()
    assert guard.breaker.state is State.CLOSED and guard.breaker.allow(0.0)
    assert guard.budget.try_retry(0.0)
