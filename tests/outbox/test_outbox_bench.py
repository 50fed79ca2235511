"""bench/outbox_bench.py runs end to end and prints its figures (their values are not asserted)."""

from __future__ import annotations

import pytest

from bench import outbox_bench

pytestmark = pytest.mark.rabbitmq


def test_the_outbox_benchmark_prints_throughput_and_latency(capsys: pytest.CaptureFixture[str]) -> None:
    assert outbox_bench.main(["--events", "60", "--rounds", "1", "--latency", "3"]) == 0
    out = capsys.readouterr().out
    assert "relay/publish_many" in out and out.count("relay/publish_many") == 2
    for way in ("relay (LISTEN/NOTIFY)", "send after commit", "plain publish"):
        assert way in out
