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
from ..core.events.broker import Lost, default_name, is_memory
from ..core.events.consumer import BaseConsumer
from ..core.events.existing import durable, use_as_is
from ..core.events.topology import Binding, Declaration, ExchangeSpec, QueueSpec, Topology, declarations
from ..core.settings import get_settings

Consumer = BaseConsumer[Any]


def _connect() -> Any:
    """A connection as a consumer's: the same nodes, TLS, timeouts and failures."""
    from ..sync._pika_session import blocking_connection

    settings = get_settings()
    if is_memory(settings):
        raise SvclinkError("declare needs a RabbitMQ amqp_url; memory:// lives in one process")
    try:
        return blocking_connection(settings, default_name(settings, "declare"))
    except Lost as exc:  # no node answered: what a consumer waits out, a command reports
        raise BrokerUnavailable(str(exc)) from None


def _steps(topo: Topology) -> Iterator[tuple[str, Callable[[Any], None]]]:
    """Each thing to declare, in the order a consumer declares it, as (what it is, how to
    declare it on a channel)."""
    for step in declarations(topo):
        yield _line(step), _declare_step(step)


def _line(step: Declaration) -> str:
    if isinstance(step, ExchangeSpec):
        return f"exchange {step.name!r} (topic{', durable' if durable(get_settings(), step.name) else ''})"
    if isinstance(step, Binding):
        return f"binding {step.queue!r} <- {step.exchange!r} {step.pattern!r}"
    return _queue_line(step)


def _declare_step(step: Declaration) -> Callable[[Any], None]:
    if isinstance(step, ExchangeSpec):
        keep = durable(get_settings(), step.name)
        return lambda ch: ch.exchange_declare(step.name, exchange_type="topic", durable=keep)
    if isinstance(step, Binding):
        return lambda ch: ch.queue_bind(step.queue, step.exchange, routing_key=step.pattern)
    return _queue_step(step)


def _queue_line(spec: QueueSpec) -> str:
    arguments = ", ".join(f"{k}={v!r}" for k, v in spec.arguments.items())
    return f"queue {spec.name!r} (durable{', ' + arguments if arguments else ''})"


def _queue_step(spec: QueueSpec) -> Callable[[Any], None]:
    return lambda ch: ch.queue_declare(spec.name, durable=True, arguments=dict(spec.arguments))


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
                    channel = connection.channel()  # the broker closed the last one
                    if what.startswith("exchange") and use_as_is(exc.reply_text):
                        print(f"ok: {what}: exists with another durability; consumers use it as it is")
                        continue
                    drifted += 1
                    print(f"drift: {what} is what svclink declares, but the broker has it with other "
                          f"arguments: {exc.reply_text}")  # fmt: skip
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
