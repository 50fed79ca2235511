"""Configuration errors the broker reports are raised as EventError at once, on both sides.

Retrying does not cure them, so none may look like an outage (BrokerUnavailable) to a
caller that retries on outages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import svclink

from ..events_support import WAIT, EventEnv, Recorder, env_fixture

env = env_fixture()


@pytest.fixture
def busy_thread() -> Iterator[None]:
    """Another thread of the process kept busy: the publisher's reads and writes interleave with it."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_an_exchange_of_another_type_is_an_event_error_every_time(env: EventEnv, busy_thread: None) -> None:
    name = env.other_exchange("fanout")
    errors = []
    for _ in range(30):
        with pytest.raises(svclink.EventError) as raised:
            env.publish("user.updated", {}, exchange=name)
        errors.append(raised.value)
    assert all(name in str(e) for e in errors)
    assert not any(isinstance(e, svclink.BrokerUnavailable) for e in errors)


rabbit = env_fixture([("sync", "rabbitmq"), ("aio", "rabbitmq")])


@pytest.mark.parametrize("path", ["//", "/%2F", "/", ""])
def test_every_spelling_of_the_default_vhost_reaches_it(rabbit: EventEnv, path: str) -> None:
    """``amqp://host//`` is how Celery and kombu users write vhost ``/``; both sides read it so."""
    rabbit.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:5672{path}")
    sink = rabbit.sink(["user.*"])
    rabbit.publisher().publish("user.updated", {"path": path}, exchange=rabbit.exchange)
    rec = Recorder()
    rabbit.consume(rabbit.queue(), {"user.updated": rec})
    rabbit.publisher().publish("user.updated", {"path": path}, exchange=rabbit.exchange)
    assert rec.wait(1)[0].data == {"path": path}
    assert rabbit.broker.count(sink) == 2


def _running_consumer_error(env: EventEnv) -> BaseException | None:
    running = env.start(env.consumer(env.queue(), {"user.updated": Recorder()}))
    assert running.returned.wait(WAIT), "run() kept retrying a refusal"
    return running.error


def test_a_refused_login_is_an_event_error_at_once(rabbit: EventEnv) -> None:
    rabbit.configure(amqp_url="amqp://guest:wrong-password@127.0.0.1:5672/")
    with pytest.raises(svclink.EventError, match="ACCESS_REFUSED") as raised:
        rabbit.publisher().publish("user.updated", {}, exchange=rabbit.exchange)
    assert not isinstance(raised.value, svclink.BrokerUnavailable)
    assert "wrong-password" not in str(raised.value)
    error = _running_consumer_error(rabbit)
    assert isinstance(error, svclink.EventError) and not isinstance(error, svclink.BrokerUnavailable)
    assert "ACCESS_REFUSED" in str(error)


def test_a_missing_vhost_is_an_event_error_at_once(rabbit: EventEnv) -> None:
    rabbit.configure(amqp_url=f"amqp://guest:guest@127.0.0.1:5672/no-such-vhost-{rabbit.id}")
    with pytest.raises(svclink.EventError, match="virtual host") as raised:
        rabbit.publisher().publish("user.updated", {}, exchange=rabbit.exchange)
    assert not isinstance(raised.value, svclink.BrokerUnavailable)
    error = _running_consumer_error(rabbit)
    assert isinstance(error, svclink.EventError) and not isinstance(error, svclink.BrokerUnavailable)
    assert "virtual host" in str(error)


def test_a_refusal_on_one_node_is_reported_when_no_other_takes_the_connection(rabbit: EventEnv) -> None:
    rabbit.configure(amqp_url=["amqp://guest:guest@127.0.0.1:1/", "amqp://guest:wrong@127.0.0.1:5672/"])
    with pytest.raises(svclink.EventError, match="ACCESS_REFUSED") as raised:
        rabbit.publisher().publish("user.updated", {}, exchange=rabbit.exchange)
    assert not isinstance(raised.value, svclink.BrokerUnavailable)
    assert "127.0.0.1:1/" in str(raised.value)  # every node's failure is in the message
