"""The demo's events half: consumers on both sides, publishes, a retry and a dead letter, through
``memory://`` (or ``SVCLINK_AMQP_URL``, under names unique to the run, deleted at the end)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import svclink
from svclink import context, testing
from svclink.core.events.envelope import Event
from svclink.core.events.handling import DEAD_REASON_HEADER, ERROR_HEADER
from svclink.core.events.topology import QueueSpec, declarations, topology

from .steps import line

RETRY_DELAY = 0.2
WAIT = 5.0  # the longest any event step may take


class _Seen:
    """What the handlers saw (side, event, request id bound, when), for the main thread to wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._calls: list[tuple[str, Event, str | None, float]] = []

    def add(self, side: str, event: Event) -> None:
        bound = context.current()
        with self._changed:
            self._calls.append((side, event, bound.request_id if bound else None, time.perf_counter()))
            self._changed.notify_all()

    def wait(self, side: str, event_id: str, attempt: int = 1) -> tuple[str | None, float]:
        """(request id, when) of ``side``'s handler call for that event and attempt."""

        def find() -> tuple[str | None, float] | None:
            for s, event, request_id, at in self._calls:
                if s == side and event.event_id == event_id and event.attempt == attempt:
                    return request_id, at
            return None

        with self._changed:
            if not self._changed.wait_for(lambda: find() is not None, WAIT):
                raise TimeoutError(f"the {side} handler did not see attempt {attempt} within {WAIT} s")
            found = find()
            assert found is not None
            return found


class _Broker:
    """The broker seen from outside svclink: consumer counts, dead letters, cleanup."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.memory = url.startswith("memory:")

    def _channel(self) -> Any:
        import pika

        return pika.BlockingConnection(pika.URLParameters(self.url)).channel()

    def consumers(self, queue: str) -> int:
        if self.memory:
            broker = testing.get_broker(self.url)
            return broker.consumer_count(queue) if broker.queue_exists(queue) else 0
        try:
            channel = self._channel()
        except Exception:  # the broker does not answer (yet): the caller's wait runs out
            return 0
        try:
            return int(channel.queue_declare(queue, passive=True).method.consumer_count)
        except Exception:  # not declared yet
            return 0
        finally:
            if channel.connection.is_open:
                channel.connection.close()

    def take(self, queue: str) -> Mapping[str, Any] | None:
        """The headers of the oldest message in ``queue``, taking it off; None when it is empty."""
        if self.memory:
            message = testing.get_broker(self.url).get(queue)
            return None if message is None else message.headers
        channel = self._channel()
        try:
            method, properties, _ = channel.basic_get(queue, auto_ack=True)
            return None if method is None else dict(properties.headers or {})
        finally:
            channel.connection.close()

    def delete(self, queues: list[str], exchange: str) -> None:
        if self.memory:
            return  # it goes with the process
        channel = self._channel()
        for queue in queues:
            channel.queue_delete(queue)
        channel.exchange_delete(exchange)
        channel.connection.close()


def _until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {WAIT} s")
        time.sleep(0.01)
    return result


def _consumers(run_id: str, seen: _Seen) -> tuple[Any, Any]:
    """A sync consumer of ``user.*`` (a handler fails once, one always) and an aio one of ``user.updated``."""
    import svclink.aio
    import svclink.sync

    exchange = f"demo.{run_id}"
    notify = svclink.sync.EventConsumer(
        f"{exchange}.notifications", exchange=exchange, bindings=["user.*"],
        max_attempts=2, retry_delays=[RETRY_DELAY],
    )  # fmt: skip

    @notify.on("user.updated")
    def mail_change(event: Event) -> None:
        seen.add("sync", event)

    @notify.on("user.created")
    def mail_welcome(event: Event) -> None:
        seen.add("sync", event)
        if event.attempt == 1:
            raise RuntimeError("mail server warming up")

    @notify.on("user.deleted")
    def mail_goodbye(event: Event) -> None:
        seen.add("sync", event)
        raise RuntimeError("no such mailbox")

    audit = svclink.aio.EventConsumer(f"{exchange}.audit", exchange=exchange, bindings=["user.updated"])

    @audit.on("user.updated")
    async def record(event: Event) -> None:
        seen.add("aio", event)

    return notify, audit


@contextmanager
def _running(notify: Any, audit: Any) -> Iterator[float]:
    """Both consumers on threads of their own (the aio one on its own event loop) until the block ends."""
    threads = [
        threading.Thread(target=notify.run, name="demo-sync-consumer", daemon=True),
        threading.Thread(target=lambda: asyncio.run(audit.run()), name="demo-aio-consumer", daemon=True),
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        yield started
    finally:
        notify.stop()
        audit.stop()
        for thread in threads:
            thread.join(WAIT)


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """The consumers log each failure with its traceback; the demo tells the story itself."""
    names = ("svclink.events", "pika", "aio_pika", "aiormq")
    handler = logging.NullHandler()
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.propagate = propagate


def _event_steps(
    notify: Any, audit: Any, seen: _Seen, broker: _Broker, started: float, out: Callable[[str], None]
) -> None:
    import svclink.aio
    import svclink.sync

    def handled(side: str, event: Event, published: float, attempt: int = 1) -> None:
        request_id, at = seen.wait(side, event.event_id, attempt)
        what = f"handled {event.event_type}" + (f" on attempt {attempt}" if attempt > 1 else "")
        took = (at - published) * 1000
        out(f"  [{side:4}] {what:<36} request id {request_id}  ({took:.1f} ms from publish())")

    for side, consumer in (("sync", notify), ("aio", audit)):
        queue, bound = consumer.config.queue, ", ".join(consumer.config.bindings)
        _until(functools.partial(broker.consumers, queue), f"consumer on {queue}")
        out(line(side, "consumer running", started, f"{queue} <- {bound}"))

    started = time.perf_counter()
    with context.bind(request_id="demo-request-2"):
        event = svclink.sync.get_publisher().publish(
            "user.updated", {"user_id": 1}, exchange=notify.config.exchange
        )
    out(line("sync", "publish user.updated", started, f"-> event {event.event_id[:8]}, confirmed"))
    handled("sync", event, started)
    handled("aio", event, started)

    async def publish_created() -> Event:
        publisher = await svclink.aio.get_publisher()
        with context.bind(request_id="demo-request-3"):
            sent = await publisher.publish("user.created", {"user_id": 3}, exchange=notify.config.exchange)
        await publisher.close()
        return sent

    started = time.perf_counter()
    event = asyncio.run(publish_created())
    out(line("aio", "publish user.created", started, f"-> event {event.event_id[:8]}, confirmed"))
    seen.wait("sync", event.event_id, 1)
    out(f"  [sync] {'handler failed on attempt 1':<36} retried after {RETRY_DELAY} s through a delay queue")
    handled("sync", event, started, attempt=2)

    started = time.perf_counter()
    event = svclink.sync.get_publisher().publish(
        "user.deleted", {"user_id": 2}, exchange=notify.config.exchange
    )
    out(line("sync", "publish user.deleted", started, f"-> event {event.event_id[:8]}, confirmed"))
    seen.wait("sync", event.event_id, 2)
    dead = notify.config.dead_queue
    headers = _until(lambda: broker.take(dead), f"a dead letter in {dead}")
    out(line("sync", "failed twice: dead-lettered", started,
              f"-> {dead} ({headers[DEAD_REASON_HEADER]}: {headers[ERROR_HEADER]})"))  # fmt: skip
    svclink.sync.get_publisher().close()


def events(out: Callable[[str], None]) -> int:
    url = os.environ.get("SVCLINK_AMQP_URL") or "memory://"
    settings = svclink.get_settings()
    svclink.configure(
        service_name=settings.service_name,
        service_connections=settings.service_connections,
        service_hosts=dict(settings.service_hosts),
        response_timeout=settings.response_timeout,
        amqp_url=url,
    )
    broker = _Broker(svclink.get_settings().amqp_url[0])
    where = "memory://, the in-process broker" if broker.memory else "the broker in SVCLINK_AMQP_URL"
    run_id = uuid.uuid4().hex[:6]
    out(f"Events through {where} (exchange demo.{run_id}):")
    seen = _Seen()
    notify, audit = _consumers(run_id, seen)
    steps = [step for c in (notify, audit) for step in declarations(topology(c.config))]
    queues = [step.name for step in steps if isinstance(step, QueueSpec)]
    try:
        with _quiet_logs(), _running(notify, audit) as started:
            _event_steps(notify, audit, seen, broker, started, out)
    except (TimeoutError, svclink.EventError) as exc:
        hint = "" if broker.memory else " (does the broker in SVCLINK_AMQP_URL answer?)"
        out(f"  events: {exc}{hint}")
        return 1
    finally:
        with contextlib.suppress(Exception):  # a broker that never answered has nothing to delete
            broker.delete(queues, notify.config.exchange)
    return 0
