"""``svclink.check()`` reports open breakers and consumers that are not consuming, on both sides."""

from __future__ import annotations

import time

import pytest

import svclink

from ..conftest import Side, use_server
from ..events_support import EventEnv, Recorder, env_fixture, eventually
from ..server import Reply, TestServer, closed_port

env = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])


def test_an_open_breaker_is_a_problem_until_it_closes(side: Side, server: TestServer) -> None:
    use_server(server, circuit_breaker=svclink.BreakerPolicy(failure_threshold=1, reset_timeout=0.3))
    server.route("GET", "/down", Reply(500))
    server.route("GET", "/up", Reply(200, {}))
    assert svclink.check() == []
    with pytest.raises(svclink.ServerError):
        side.call("user", "GET", "/down")
    (problem,) = svclink.check()
    assert "circuit breaker of 'user' is open" in problem
    time.sleep(0.35)  # the breaker's reset timeout: the next call is its probe
    assert side.call("user", "GET", "/up") == {}
    assert svclink.check() == []


def test_a_consumer_that_cannot_reach_the_broker_is_a_problem(env: EventEnv) -> None:
    queue = env.queue()
    env.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:{closed_port()}/", connect_timeout=0.5)
    running = env.start(env.consumer(queue, {"#": Recorder()}))
    eventually(lambda: any(queue in p for p in svclink.check()), what="the consumer reported")
    (problem,) = [p for p in svclink.check() if queue in p]
    assert "is not consuming" in problem
    running.consumer.stop()
    running.thread.join(10)
    assert not any(queue in p for p in svclink.check())
