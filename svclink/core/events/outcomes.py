"""What became of a published message, and what a publisher does about it.

A driver reports one :class:`Outcome` per message it sent, as its library told it (a
confirm, a nack, a return, no answer in time, a connection lost); :func:`publish_error`
phrases it for the caller and :func:`resolve` decides what to send again.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from ..errors import PublishError, PublishNacked, PublishTimeout, UnroutableError
from .message import OutgoingMessage


class Outcome(enum.Enum):
    """What became of one published message, as a driver reports it."""

    #: the broker confirmed it
    ACKED = "ack"
    #: the broker refused it (a full ``reject-publish`` queue, say)
    NACKED = "nack"
    #: ``mandatory`` and no queue is bound for it (then confirmed)
    RETURNED = "returned"
    #: no confirm before the deadline: it may or may not have landed
    TIMED_OUT = "timeout"
    #: the connection died after it was written, before its confirm: it may or may not have landed
    LOST = "lost"
    #: the broker closed the channel on it (over its max_message_size, say): it did not land,
    #: and sending it again would meet the same answer
    REFUSED = "refused"


#: the reply code of a channel the broker closes on a message it will never take (PRECONDITION_FAILED)
_REFUSING_CODE = 406


def channel_closed(reply_code: int | None) -> Outcome:
    """The outcome of the messages awaiting their confirms when the broker closed the channel
    with ``reply_code`` (None: the channel went with its connection).

    The broker handles a channel's frames in order, so the messages it had not confirmed
    when it closed the channel never landed. ``PRECONDITION_FAILED`` is an answer to the
    message itself: sent again, it would be refused again. Anything else is a lost
    connection, sent again on a new one.
    """
    return Outcome.REFUSED if reply_code == _REFUSING_CODE else Outcome.LOST


def publish_error(outcome: Outcome, message: OutgoingMessage, detail: str = "") -> PublishError | None:
    """The exception for a publish ``outcome`` (None when the broker confirmed it)."""
    if outcome is Outcome.ACKED:
        return None
    where = f"exchange {message.exchange!r}, routing key {message.routing_key!r}"
    what = f"event {message.properties.message_id}" if message.properties.message_id else "message"
    extra = f" ({detail})" if detail else ""
    if outcome is Outcome.RETURNED:
        return UnroutableError(f"{what} is unroutable: no queue is bound to {where}{extra}")
    if outcome is Outcome.NACKED:
        return PublishNacked(f"the broker refused {what} on {where}{extra}")
    if outcome is Outcome.REFUSED:
        return PublishNacked(
            f"the broker refused {what} on {where} and closed the channel{extra}; not sent again"
        )
    if outcome is Outcome.TIMED_OUT:
        return PublishTimeout(
            f"no confirm for {what} on {where} in time{extra}; it may or may not have landed"
        )
    return PublishError(f"connection lost before the confirm of {what} on {where}{extra}")


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
    final: tuple[tuple[int, Outcome], ...]


def resolve(outcomes: Sequence[Outcome], *, attempt: int, late: bool) -> Resolution:
    """Sort the outcomes of send ``attempt`` (1-based); ``late`` says the deadline has passed.

    A message lost with its connection is sent again once, if there is time; the resend
    may duplicate it (consumers deduplicate on the event id). Lost at the deadline, it is
    reported as a timeout: it may or may not have landed.
    """
    retry = []
    final = []
    for position, outcome in enumerate(outcomes):
        lost = outcome is Outcome.LOST
        if lost and attempt < SEND_ATTEMPTS and not late:
            retry.append(position)
        else:
            final.append((position, Outcome.TIMED_OUT if lost and late else outcome))
    drop = any(o in (Outcome.LOST, Outcome.TIMED_OUT, Outcome.REFUSED) for o in outcomes)
    return Resolution(drop=drop, retry=tuple(retry), final=tuple(final))
