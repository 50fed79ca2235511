"""Which consumed messages to acknowledge, and in how few frames.

A consumer acks each message once its handler is done with it. One ``basic.ack`` frame
per message is most of what consuming costs a client: the frame is encoded, written and
flushed, and the broker handles it, every time. AMQP lets one frame with ``multiple``
set ack every outstanding delivery up to a tag, so a consumer that finishes several
messages in a row can ack them all at once.

:class:`Acks` is that bookkeeping, with no I/O: a driver tells it each delivery as it
arrives and each message as it is finished, and :meth:`Acks.take` answers with the
frames to send, one ``multiple`` ack for the finished run at the front, and a single ack
for each message finished behind one still running (so a slow handler never holds back
the acks of fast ones, which would stall the prefetch window). :meth:`Acks.due` says
when: acks wait only while the next message is already in hand, and for at most half
the prefetch window, so the broker keeps sending meanwhile. The sync consumer asks it
after every message; the aio consumer, whose handlers run at once, takes once per pass
of its event loop instead. Either way an ack is held back for no longer than the
messages beside it take, and a message whose ack was held back when its connection died
is redelivered, as any unacked message is.
"""

from __future__ import annotations

from collections import deque

import attrs


@attrs.frozen
class AckFrame:
    """One ``basic.ack``: ``tag``, and with ``multiple`` every delivery before it too."""

    tag: int
    multiple: bool = False


@attrs.define
class Acks:
    """The deliveries of one channel that are not acked yet, and which of them are finished."""

    #: the prefetch window: at most half of it waits for an ack while more messages are in hand
    prefetch: int = 1
    #: delivered and not yet acked, in delivery (so tag) order
    _outstanding: deque[int] = attrs.field(factory=deque, init=False)
    #: finished, their ack not sent yet
    _finished: set[int] = attrs.field(factory=set, init=False)

    @property
    def held(self) -> int:
        """How many finished messages wait for their ack."""
        return len(self._finished)

    def delivered(self, tag: int) -> None:
        """A message arrived (call in arrival order: tags grow on a channel)."""
        self._outstanding.append(tag)

    def finished(self, tag: int) -> None:
        """The message's handling is over and it may be acked."""
        self._finished.add(tag)

    def settled(self, tag: int) -> None:
        """The message was settled another way (a nack) and gets no ack.

        Call it once the nack is sent, not before: until then the message must stay in the
        way of a ``multiple`` ack, which would otherwise ack it too.
        """
        self._finished.discard(tag)
        if tag in self._outstanding:
            self._outstanding.remove(tag)

    def due(self, *, more_in_hand: bool) -> list[AckFrame]:
        """The frames to send now that a message is finished: none while the next message is
        already in hand and fewer than half the prefetch window wait, else :meth:`take`."""
        if more_in_hand and self.held < max(1, self.prefetch // 2):
            return []
        return self.take()

    def take(self) -> list[AckFrame]:
        """The frames that ack every finished message, in as few frames as is safe."""
        if not self._finished:
            return []
        frames = []
        run = 0
        last = 0
        outstanding, finished = self._outstanding, self._finished
        while outstanding and outstanding[0] in finished:
            last = outstanding.popleft()
            finished.discard(last)
            run += 1
        if run:
            frames.append(AckFrame(last, multiple=run > 1))
        for tag in sorted(finished):  # behind a message still being handled: one by one
            outstanding.remove(tag)
            frames.append(AckFrame(tag))
        finished.clear()
        return frames
