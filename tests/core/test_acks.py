"""Which consumed messages to ack, in how few frames: the bookkeeping alone, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svclink.core.events.acks import AckFrame, Acks


def delivered(*tags: int) -> Acks:
    acks = Acks()
    for tag in tags:
        acks.delivered(tag)
    return acks


def finish(acks: Acks, *tags: int) -> Acks:
    for tag in tags:
        acks.finished(tag)
    return acks


def test_nothing_finished_takes_nothing() -> None:
    assert Acks().take() == []
    acks = delivered(1, 2, 3)
    assert acks.take() == []
    assert acks.held == 0


def test_a_run_finished_in_order_is_one_multiple_ack() -> None:
    acks = finish(delivered(1, 2, 3, 4, 5), 1, 2, 3)
    assert acks.take() == [AckFrame(3, multiple=True)]
    assert acks.take() == []  # each message is acked once
    finish(acks, 4, 5)
    assert acks.take() == [AckFrame(5, multiple=True)]
    assert acks.take() == []


def test_a_run_of_one_is_a_single_ack() -> None:
    acks = finish(delivered(1, 2, 3), 1)
    assert acks.take() == [AckFrame(1, multiple=False)]
    finish(acks, 2)
    assert acks.take() == [AckFrame(2, multiple=False)]  # not a multiple ack reaching back to 1


def test_messages_finished_behind_a_slow_one_are_acked_one_by_one() -> None:
    acks = finish(delivered(1, 2, 3, 4), 4, 2, 3)  # 1 is still being handled
    frames = acks.take()
    assert frames == [AckFrame(2), AckFrame(3), AckFrame(4)]
    assert not any(f.multiple for f in frames)  # a multiple ack would ack 1 too
    finish(acks, 1)
    assert acks.take() == [AckFrame(1, multiple=False)]  # 2..4 are no longer outstanding


def test_the_run_at_the_front_and_the_ones_behind_a_gap() -> None:
    acks = finish(delivered(1, 2, 3, 4, 5, 6), 1, 2, 5)
    # 1..2 in one frame; 5 behind 3 and 4, still running, alone
    assert acks.take() == [AckFrame(2, multiple=True), AckFrame(5)]
    finish(acks, 3, 4, 6)
    assert acks.take() == [AckFrame(6, multiple=True)]  # 5 is acked already: 3..6 is one run
    assert acks.take() == []


def test_a_message_not_yet_nacked_stays_in_the_way_of_a_multiple_ack() -> None:
    acks = finish(delivered(1, 2, 3), 2, 3)  # 1 is being nacked: settled() comes once the nack is out
    frames = acks.take()
    assert frames == [AckFrame(2), AckFrame(3)]
    assert all(not f.multiple for f in frames)


def test_a_settled_message_no_longer_stops_a_run() -> None:
    acks = delivered(1, 2, 3, 4)
    acks.settled(2)  # nacked
    finish(acks, 1, 3, 4)
    assert acks.take() == [AckFrame(4, multiple=True)]  # 2 is not outstanding at the broker any more
    assert acks.take() == []


def test_a_settled_message_at_the_front_is_passed_by_the_next_run() -> None:
    acks = finish(delivered(1, 2, 3), 2, 3)
    acks.settled(1)
    assert acks.take() == [AckFrame(3, multiple=True)]


def test_a_message_settled_after_finishing_gets_no_ack() -> None:
    acks = finish(delivered(1, 2), 1, 2)
    acks.settled(2)
    assert acks.held == 1
    assert acks.take() == [AckFrame(1)]


def test_settling_an_unknown_tag_changes_nothing() -> None:
    acks = finish(delivered(1, 2), 1)
    acks.settled(7)
    assert acks.take() == [AckFrame(1)]


def test_held_counts_the_finished_messages_whose_ack_waits() -> None:
    acks = delivered(1, 2, 3, 4)
    assert acks.held == 0
    finish(acks, 3)
    assert acks.held == 1
    finish(acks, 1, 2)
    assert acks.held == 3
    finish(acks, 3)  # finishing twice counts once
    assert acks.held == 3
    acks.take()
    assert acks.held == 0
    finish(acks, 4)
    assert acks.held == 1


# -- the property: what the broker makes of the frames ----------------------------------


class ProtocolError(AssertionError):
    """What RabbitMQ answers with ``PRECONDITION_FAILED - unknown delivery tag``: the channel dies."""


class Broker:
    """One channel's deliveries, as the broker tracks them."""

    def __init__(self) -> None:
        self.unacked: set[int] = set()
        self.acked: list[int] = []
        self.nacked: set[int] = set()
        self.next_tag = 1

    def deliver(self) -> int:
        tag, self.next_tag = self.next_tag, self.next_tag + 1
        self.unacked.add(tag)
        return tag

    def nack(self, tag: int) -> None:
        self.unacked.remove(tag)
        self.nacked.add(tag)

    def ack(self, frame: AckFrame) -> list[int]:
        """The tags this frame acks; raises :class:`ProtocolError` for a tag not outstanding."""
        if frame.tag not in self.unacked:
            raise ProtocolError(f"{frame} names a tag that is not outstanding")
        covered = sorted(t for t in self.unacked if t <= frame.tag) if frame.multiple else [frame.tag]
        self.unacked -= set(covered)
        self.acked += covered
        return covered


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.just(0)),
        st.tuples(st.sampled_from(["finish", "settle", "take"]), st.integers(0, 10_000)),
    ),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(OPS)
def test_frames_ack_exactly_the_finished_messages(ops: list[tuple[str, int]]) -> None:
    broker = Broker()
    acks = Acks()
    running: set[int] = set()  # delivered, neither finished nor settled: its handler runs
    finished: set[int] = set()
    settled: set[int] = set()

    def take() -> None:
        for frame in acks.take():
            for tag in broker.ack(frame):
                assert tag in finished, f"{frame} acked {tag}, which is not finished"

    for op, pick in ops:
        if op == "deliver":
            tag = broker.deliver()
            acks.delivered(tag)
            running.add(tag)
        elif op == "take":
            take()
        elif running:
            tag = sorted(running)[pick % len(running)]
            running.discard(tag)
            if op == "finish":
                acks.finished(tag)
                finished.add(tag)
            else:  # the nack goes out, then settled(): as both consumers do it
                broker.nack(tag)
                acks.settled(tag)
                settled.add(tag)

    for tag in sorted(running):  # every handler returns in the end
        acks.finished(tag)
        finished.add(tag)
    take()
    assert acks.take() == []
    assert acks.held == 0
    assert sorted(broker.acked) == sorted(finished)  # each finished message acked exactly once
    assert len(broker.acked) == len(set(broker.acked))
    assert not settled & set(broker.acked)
    assert broker.unacked == set()


@pytest.mark.parametrize("order", [[1, 2, 3, 4], [4, 3, 2, 1], [2, 4, 1, 3], [3, 1, 4, 2]])
def test_every_finishing_order_acks_each_message_once(order: list[int]) -> None:
    broker = Broker()
    acks = Acks()
    for _ in order:
        acks.delivered(broker.deliver())
    for n, tag in enumerate(order):
        acks.finished(tag)
        for frame in acks.take():
            assert set(broker.ack(frame)) <= set(order[: n + 1])  # only finished ones
    assert sorted(broker.acked) == [1, 2, 3, 4]


def test_due_holds_acks_only_while_more_is_in_hand_and_at_most_half_the_window() -> None:
    acks = Acks(prefetch=10)
    for tag in range(1, 11):
        acks.delivered(tag)
    for tag in range(1, 5):
        acks.finished(tag)
        assert acks.due(more_in_hand=True) == []  # 1-4 wait: the next message is already here
    acks.finished(5)
    assert acks.due(more_in_hand=True) == [AckFrame(5, multiple=True)]  # half the window: sent
    acks.finished(6)
    assert acks.due(more_in_hand=False) == [AckFrame(6)]  # nothing else in hand: sent at once


def test_due_with_prefetch_one_never_holds() -> None:
    acks = Acks(prefetch=1)
    acks.delivered(1)
    acks.finished(1)
    assert acks.due(more_in_hand=True) == [AckFrame(1)]
