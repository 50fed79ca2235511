"""``svclink declare``: declare what consumers need before any of them runs, and report drift.

A deploy runs it before the publishers start, so an event published before its consumer's
first start is queued rather than unroutable. Declaring is idempotent: what exists as
svclink would declare it is left as it is. What exists with other arguments (a queue
made classic that svclink declares quorum, a delay queue with another TTL, an exchange of
another type) is *drift*: RabbitMQ refuses to redeclare it, and the command prints what
svclink declares beside the broker's reply naming the argument that differs, then exits 1.
Nothing is deleted or changed: moving a queue to new arguments drains and deletes it, a
decision for a person.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..core.errors import BrokerUnavailable, SvclinkError
from ..core.events.consumer import BaseConsumer
from ..core.events.topology import QueueSpec, Topology
from ..core.settings import get_settings

Consumer = BaseConsumer[Any]


def _connect() -> Any:
    import pika
    import pika.exceptions

    settings = get_settings()
    if settings.amqp_url[0].startswith("memory:"):
        raise SvclinkError("declare needs a RabbitMQ amqp_url; memory:// lives in one process")
    errors = []
    for url in settings.amqp_url:
        params = pika.URLParameters(url)
        params.connection_attempts = 1
        params.socket_timeout = settings.connect_timeout
        params.client_properties = {"connection_name": "svclink:declare", "product": "svclink"}
        try:
            return pika.BlockingConnection(params)
        except (pika.exceptions.AMQPError, OSError) as exc:
            errors.append(repr(exc))
    raise BrokerUnavailable(f"cannot connect to the broker: {'; '.join(errors)}")


def _steps(topo: Topology) -> Iterator[tuple[str, Callable[[Any], None]]]:
    """Each thing to declare, as (what it is, how to declare it on a channel)."""
    yield (
        f"exchange {topo.exchange!r} (topic, durable)",
        lambda ch: ch.exchange_declare(topo.exchange, exchange_type="topic", durable=True),
    )
    for spec in (topo.queue, *topo.retry_queues, topo.dead_queue):
        yield _queue_line(spec), _queue_step(spec)
    for pattern in topo.bindings:
        yield f"binding {topo.queue.name!r} <- {topo.exchange!r} {pattern!r}", _bind_step(topo, pattern)


def _queue_line(spec: QueueSpec) -> str:
    arguments = ", ".join(f"{k}={v!r}" for k, v in spec.arguments.items())
    return f"queue {spec.name!r} (durable{', ' + arguments if arguments else ''})"


def _queue_step(spec: QueueSpec) -> Callable[[Any], None]:
    return lambda ch: ch.queue_declare(spec.name, durable=True, arguments=dict(spec.arguments))


def _bind_step(topo: Topology, pattern: str) -> Callable[[Any], None]:
    return lambda ch: ch.queue_bind(topo.queue.name, topo.exchange, routing_key=pattern)


def declare_all(consumers: Sequence[Consumer]) -> int:
    """Declare every consumer's topology; print each line; 1 if anything drifted, else 0."""
    import pika.exceptions

    connection = _connect()
    drifted = 0
    try:
        channel = connection.channel()
        for consumer in consumers:
            if consumer.config.exclusive:
                print(f"skipped {consumer.config.queue!r}: exclusive queues live only with their consumer")
                continue
            for what, step in _steps(consumer.topology()):
                try:
                    step(channel)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 406:
                        raise SvclinkError(f"cannot declare {what}: {exc.reply_text}") from None
                    drifted += 1
                    print(f"drift: {what} is what svclink declares, but the broker has it with other "
                          f"arguments: {exc.reply_text}")  # fmt: skip
                    channel = connection.channel()  # the broker closed the last one
                else:
                    print(f"ok: {what}")
    finally:
        if connection.is_open:
            connection.close()
    if drifted:
        print(f"{drifted} declarations drifted: see above; nothing was changed")
    return 1 if drifted else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="module:attribute naming a consumer or a list of them, or a module (all its consumers)",
    )


def run(args: argparse.Namespace) -> int:
    """``svclink declare``."""
    from .worker import load

    return declare_all(load(args.targets))
