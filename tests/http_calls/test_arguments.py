"""Arguments of ``http_dispatch`` at their extremes: clamped or refused before any I/O, alike on both sides.

Timeouts are clamped to a year (:mod:`svclink.core.durations`): ``1e10`` or ``10**5000``
seconds means "as long as it takes", and must neither overflow in a driver nor kill the
sync side's deadline reaper (after which no call would be bounded any more). Arguments
that cannot be sent as meant are :class:`~svclink.InvalidRequest` naming the argument.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import svclink
from svclink.sync import deadline

from ..conftest import Side
from ..server import Reply, TestServer
from ..services import ROOT

HUGE_TIMEOUTS = [1e10, 1e300, 2**63, 10**5000]


def _trickling(server: TestServer) -> None:
    """``GET /trickle``: a body sent one byte every 0.1 s, each read well inside any timeout."""
    server.route("GET", "/trickle", Reply(200, body=b"x" * 200, trickle=1, trickle_pause=0.1))


@pytest.mark.parametrize("timeout", HUGE_TIMEOUTS, ids=["1e10", "1e300", "2**63", "10**5000"])
def test_a_huge_response_timeout_is_clamped_and_later_deadlines_still_hold(
    side: Side, user_service: TestServer, timeout: Any
) -> None:
    user_service.route("GET", "/x", Reply(200, {"ok": True}))
    _trickling(user_service)
    assert side.call("user", "GET", "/x", response_timeout=timeout) == {"ok": True}
    started = time.monotonic()
    with pytest.raises(svclink.ServiceTimeout):
        side.call("user", "GET", "/trickle", response_timeout=1.0, retry_count=0)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("value", [1e10, 2**63, 10**5000], ids=["1e10", "2**63", "10**5000"])
def test_huge_timeouts_in_settings_are_clamped(value: Any) -> None:
    settings = svclink.Settings(response_timeout=value, connect_timeout=value)
    assert settings.response_timeout == settings.connect_timeout == 365 * 24 * 3600.0


_FIRST_CALL = textwrap.dedent(
    """
    import time, svclink, svclink.sync, svclink.aio, asyncio
    from tests.server import Reply, TestServer
    server = TestServer().start()
    server.route("GET", "/x", Reply(200, {"ok": True}))
    server.route("GET", "/trickle", Reply(200, body=b"x" * 200, trickle=1, trickle_pause=0.1))
    svclink.configure(service_connections=["user"], service_hosts={"user": server.url})

    def call(path, timeout):
        if SIDE == "sync":
            user = svclink.sync.get_service("user")
            return user.http_dispatch("GET", path, response_timeout=timeout, retry_count=0)
        async def go():
            user = await svclink.aio.get_service("user")
            return await user.http_dispatch("GET", path, response_timeout=timeout, retry_count=0)
        return asyncio.run(go())

    print("first:", call("/x", 1e10))
    started = time.monotonic()
    try:
        call("/trickle", 1.0)
    except svclink.ServiceTimeout:
        print("timed out after %.1f" % (time.monotonic() - started))
    """
)


def test_the_first_call_of_a_process_with_a_huge_timeout_leaves_deadlines_working(side: Side) -> None:
    """As reported: the process's first call used 1e10 and killed the reaper on its way."""
    done = subprocess.run(
        [sys.executable, "-c", f"SIDE = {side.name!r}\n" + _FIRST_CALL],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SVCLINK_")},
    )  # fmt: skip
    assert "first: {'ok': True}" in done.stdout, done.stdout + done.stderr
    assert "timed out after" in done.stdout, done.stdout + done.stderr
    assert float(done.stdout.rsplit("after", 1)[1]) < 3


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_deadline_reaper_comes_back_if_its_thread_dies(
    user_service: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread cannot be killed from outside, so its death is caused from inside: one step
    raises SystemExit (which the reaper's guard lets through). The next attempt starts a new one."""
    side = Side("sync-requests")
    user_service.route("GET", "/x", Reply(200, {"ok": True}))
    _trickling(user_service)
    side.call("user", "GET", "/x")  # the reaper runs
    reaper = deadline._reaper
    old = reaper._thread
    assert old is not None and old.is_alive()

    def die() -> None:
        raise SystemExit

    monkeypatch.setattr(reaper, "_step", die)
    with reaper._cond:
        reaper._cond.notify()
    old.join(5)
    assert not old.is_alive()
    monkeypatch.undo()
    started = time.monotonic()
    with pytest.raises(svclink.ServiceTimeout):
        side.call("user", "GET", "/trickle", response_timeout=1.0, retry_count=0)
    assert time.monotonic() - started < 3
    assert reaper._thread is not old and reaper._thread.is_alive()
    side.close()


BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("path-param-huge-int", {"endpoint": "/{id}", "path_params": {"id": 10**5000}}, "path parameter 'id'"),
    ("query-huge-int", {"query_params": {"n": 10**5000}}, "query parameter 'n'"),
    ("query-huge-int-in-list", {"query_params": {"n": [1, 10**5000]}}, "query parameter 'n'"),
    ("url-too-long", {"query_params": {"q": "x" * 70_000}}, "URL"),
    ("timeout-huge-negative", {"response_timeout": -(10**5000)}, "response_timeout"),
    ("key-blank", {"idempotency_key": " "}, "idempotency_key"),
    ("key-tab", {"idempotency_key": "\t"}, "idempotency_key"),
    ("propagate-error-str", {"propagate_error": "no"}, "propagate_error"),
    ("propagate-error-int", {"propagate_error": 0}, "propagate_error"),
    ("include-status-code-str", {"include_status_code": "yes"}, "include_status_code"),
    ("include-status-code-none", {"include_status_code": None}, "include_status_code"),
    ("raw-response-int", {"raw_response": 1}, "raw_response"),
    ("max-response-size-zero", {"max_response_size": 0}, "max_response_size"),
    ("max-response-size-bool", {"max_response_size": True}, "max_response_size"),
    ("max-response-size-float", {"max_response_size": 1.5}, "max_response_size"),
]


@pytest.mark.parametrize(
    ("kwargs", "says"), [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS]
)
def test_a_bad_argument_is_refused_naming_it_before_any_io(
    side: Side, user_service: TestServer, kwargs: dict[str, Any], says: str
) -> None:
    kwargs = dict(kwargs)
    endpoint = kwargs.pop("endpoint", "/x")
    with pytest.raises(svclink.InvalidRequest) as info:
        side.call("user", "POST", endpoint, **kwargs)
    assert says in str(info.value)
    assert user_service.requests == []
