"""The decisions of running a consumer: the phases of a stop, prefetch sizing, probes, exit codes."""

from __future__ import annotations

import pytest

import svclink
from svclink.core.events.running import (
    Phase,
    Shutdown,
    State,
    exit_code,
    explain_lost,
    probe,
    sized_prefetch,
)


def test_a_stop_drains_for_the_grace_then_abandons() -> None:
    shutdown = Shutdown(grace=10.0)
    assert shutdown.phase(100.0) is Phase.RUNNING and not shutdown.requested
    shutdown.request()
    assert shutdown.phase(200.0) is Phase.DRAINING  # the grace starts when the run first sees it
    assert shutdown.remaining(205.0) == 5.0
    assert shutdown.phase(209.9) is Phase.DRAINING
    assert shutdown.phase(210.0) is Phase.ABANDONED
    shutdown.reset()
    assert shutdown.phase(300.0) is Phase.RUNNING and shutdown.remaining(300.0) == 10.0


def test_a_second_stop_abandons_at_once() -> None:
    shutdown = Shutdown(grace=30.0)
    shutdown.request()
    assert shutdown.phase(1.0) is Phase.DRAINING
    shutdown.request()
    assert shutdown.phase(1.1) is Phase.ABANDONED


def test_prefetch_is_at_least_the_concurrency() -> None:
    assert sized_prefetch(None, 10, None) == 10
    assert sized_prefetch(None, 10, 4) == 10
    assert sized_prefetch(None, 10, 32) == 32
    assert sized_prefetch(50, 10, 32) == 50
    with pytest.raises(svclink.InvalidEvent, match=r"prefetch \(4\) must be at least concurrency \(8\)"):
        sized_prefetch(4, 10, 8)


def test_probes_answer_livez_and_readyz() -> None:
    consuming = {"a": State.CONSUMING, "b": State.CONSUMING}
    assert probe("/livez", consuming, True) == (200, {"live": True})
    assert probe("/livez", consuming, False) == (503, {"live": False})
    ready = {"ready": True, "consumers": {"a": "consuming", "b": "consuming"}}
    assert probe("/readyz", consuming, True) == (200, ready)
    status, body = probe("/readyz", {"a": State.CONSUMING, "b": State.RECONNECTING}, True) or (0, {})
    assert status == 503 and body["consumers"]["b"] == "reconnecting"
    assert probe("/readyz", {}, True) == (503, {"ready": False, "consumers": {}})
    assert probe("/other", consuming, True) is None


def test_exit_codes() -> None:
    assert exit_code(signals=1, in_time=True, failed=False) == 0
    assert exit_code(signals=0, in_time=True, failed=False) == 0
    assert exit_code(signals=2, in_time=True, failed=False) == 1
    assert exit_code(signals=1, in_time=False, failed=False) == 1
    assert exit_code(signals=0, in_time=True, failed=True) == 1


def test_the_brokers_consumer_timeout_is_named_in_the_log_line() -> None:
    reason = (
        "ChannelClosedByBroker: (406, 'PRECONDITION_FAILED - delivery acknowledgement on channel 1 "
        "timed out. Timeout value used: 1800000 ms.')"
    )
    text = explain_lost(reason)
    assert "consumer_timeout" in text and "handler_timeout" in text and reason in text
    assert explain_lost("connection reset") == "connection reset"
