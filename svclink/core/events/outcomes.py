"""The event envelope, its encoding, and the AMQP message that carries it.

An event travels as a JSON envelope (the body) plus AMQP properties and headers that copy
its type, id, source and request context, so brokers' tools, shovels and non-Python
consumers can see them without parsing the body. The body is the one source of truth
when decoding; a body that is not a valid envelope raises :class:`InvalidEvent`, which a
consumer turns into an immediate dead-letter.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..errors import PublishError, PublishNacked, PublishTimeout, UnroutableError
from .message import OutgoingMessage

#: what became of one published message, as a driver reports it
ACKED, NACKED, RETURNED, TIMED_OUT, LOST = "ack", "nack", "returned", "timeout", "lost"


def publish_error(outcome: str, message: OutgoingMessage, detail: str = "") -> PublishError | None:
    """The exception for a publish ``outcome`` (None when the broker confirmed it).

    ``LOST`` means the connection died after the message was written and before its
    confirm: it may or may not have landed, like a timeout.
    """
    if outcome == ACKED:
        return None
    where = f"exchange {message.exchange!r}, routing key {message.routing_key!r}"
    what = f"event {message.properties.message_id}" if message.properties.message_id else "message"
    extra = f" ({detail})" if detail else ""
    if outcome == RETURNED:
        return UnroutableError(f"{what} is unroutable: no queue is bound to {where}{extra}")
    if outcome == NACKED:
        return PublishNacked(f"the broker refused {what} on {where}{extra}")
    if outcome == TIMED_OUT:
        return PublishTimeout(
            f"no confirm for {what} on {where} in time{extra}; it may or may not have landed"
        )
    if outcome == LOST:
        return PublishError(f"connection lost before the confirm of {what} on {where}{extra}")
    return PublishError(f"{what} on {where} failed: {outcome}{extra}")


#: a batch is sent on at most this many connections: once, and again after a lost connection
SEND_ATTEMPTS = 2


@attrs.frozen
class Resolution:
    """What a publisher does with the outcomes of one send of a batch."""

    #: close the connection that sent it: it lost or never confirmed a message
    drop: bool
    #: positions in the batch to send again on a new connection (same event ids)
    retry: tuple[int, ...]
    #: positions settled now, with their final outcome (for :func:`publish_error`)
    final: tuple[tuple[int, str], ...]


def resolve(outcomes: Sequence[str], *, attempt: int, late: bool) -> Resolution:
    """Sort the outcomes of send ``attempt`` (1-based); ``late`` says the deadline has passed.

    A message lost with its connection is sent again once, if there is time; the resend
    may duplicate it (consumers deduplicate on the event id). Lost at the deadline, it is
    reported as a timeout: it may or may not have landed.
    """
    retry = []
    final = []
    for position, outcome in enumerate(outcomes):
        if outcome == LOST and attempt < SEND_ATTEMPTS and not late:
            retry.append(position)
        else:
            final.append((position, TIMED_OUT if outcome == LOST and late else outcome))
    drop = any(o in (LOST, TIMED_OUT) for o in outcomes)
    return Resolution(drop=drop, retry=tuple(retry), final=tuple(final))
