"""The aio publisher's deadlines: many waits, one loop timer, each wait expired at its own time.

The behaviour users see (a publish fails at its own timeout, however many are in flight)
is tested on both sides against RabbitMQ in ``test_events_faults.py``; these tests pin the
mechanism on a real event loop, with no sockets.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from svclink.aio._deadlines import Deadlines


async def _wait(deadlines: Deadlines, deadline: float, duration: float) -> tuple[str, float]:
    """Sleep ``duration`` under ``deadline``; what happened and when (seconds from now)."""
    started = time.monotonic()
    try:
        with deadlines.wait(deadline):
            await asyncio.sleep(duration)
    except TimeoutError:
        await asyncio.sleep(0.01)  # the task is not left cancelled: it goes on awaiting
        return "timed out", time.monotonic() - started
    return "done", time.monotonic() - started


def test_each_wait_expires_at_its_own_deadline_in_any_order_of_adding() -> None:
    async def main() -> list[tuple[str, float]]:
        deadlines = Deadlines()
        now = time.monotonic()
        # added latest-first, so every new deadline is earlier than the timer already set
        spans = [0.6, 0.4, 0.2]
        waits = [_wait(deadlines, now + span, 5.0) for span in spans]
        waits.append(_wait(deadlines, now + 0.3, 0.05))  # ends well before its deadline
        return await asyncio.gather(*waits)

    results = asyncio.run(main())
    for (what, took), span in zip(results[:3], [0.6, 0.4, 0.2], strict=True):
        assert what == "timed out"
        assert span - 0.01 <= took < span + 0.15, (span, took)
    assert results[3][0] == "done" and results[3][1] < 0.2


def test_a_deadline_already_past_expires_the_wait_at_once() -> None:
    async def main() -> tuple[str, float]:
        return await _wait(Deadlines(), time.monotonic() - 1.0, 5.0)

    what, took = asyncio.run(main())
    assert what == "timed out" and took < 0.1


def test_cancelling_a_waiting_task_is_a_cancellation_not_a_timeout() -> None:
    async def main() -> None:
        deadlines = Deadlines()
        task = asyncio.create_task(_wait(deadlines, time.monotonic() + 0.2, 5.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the cancelled wait is gone: a later wait still gets its own deadline
        what, took = await _wait(deadlines, time.monotonic() + 0.1, 5.0)
        assert what == "timed out" and took < 0.25

    asyncio.run(main())


def test_many_waits_share_one_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        now = time.monotonic()
        waits = [asyncio.create_task(_wait(deadlines, now + 10 + i / 1000, 5.0)) for i in range(50)]
        await asyncio.sleep(0.01)
        timers = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        assert len([t for t in timers if t.when() > loop.time() + 9]) == 1  # one timer, not 50
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

    asyncio.run(main())


def test_a_cancellation_at_the_deadline_stays_a_cancellation() -> None:
    """The task is cancelled from outside on the same pass of the loop as its deadline
    expires: the caller asked for a cancellation, and gets one, not a TimeoutError."""

    async def main() -> None:
        deadlines = Deadlines()
        task = asyncio.create_task(_wait(deadlines, time.monotonic() + 0.05, 5.0))
        await asyncio.sleep(0.01)
        timer = deadlines._timer
        assert timer is not None
        # due at the same time as the deadline's timer: both run before the task does
        asyncio.get_running_loop().call_at(timer.when(), task.cancel)
        await asyncio.sleep(0.2)
        assert task.cancelled()

    asyncio.run(main())


def test_the_wait_of_a_task_that_is_already_being_cancelled_still_times_out() -> None:
    """A wait inside cleanup after a cancellation (an ``except CancelledError`` that publishes,
    say) times out at its deadline; the earlier cancellation is left for the task to finish."""

    async def main() -> tuple[str, float]:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            return await _wait(Deadlines(), time.monotonic() + 0.05, 5.0)
        raise AssertionError("not cancelled")

    what, took = asyncio.run(main())
    assert what == "timed out" and took < 0.2


def test_a_wait_outside_a_task_is_refused() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        errors: list[BaseException] = []

        def outside() -> None:
            try:
                with deadlines.wait(time.monotonic() + 1):
                    pass
            except RuntimeError as exc:
                errors.append(exc)

        loop.call_soon(outside)
        await asyncio.sleep(0.01)
        assert len(errors) == 1 and "inside a task" in str(errors[0])

    asyncio.run(main())


def test_handlers_under_one_limit_expire_oldest_first_and_only_those_still_running() -> None:
    """A consumer's handlers share one ``Deadlines``, each under the same limit from its own
    start: one that returns in time never expires, the others expire in the order they
    started, each at its own start plus the limit, and a handler's own ``TimeoutError`` is
    not the limit's."""
    expired_in_order: list[str] = []

    async def handler(deadlines: Deadlines, name: str, duration: float) -> tuple[bool, float]:
        started = time.monotonic()
        wait = deadlines.wait(started + 0.2)
        try:
            with wait:
                await asyncio.sleep(duration)
        except TimeoutError:
            expired_in_order.append(name)
        return wait.expired, time.monotonic() - started

    async def own_timeout(deadlines: Deadlines) -> tuple[bool, bool]:
        wait = deadlines.wait(time.monotonic() + 5)
        try:
            with wait:
                raise TimeoutError("the handler's own")
        except TimeoutError as exc:
            return wait.expired, "own" in str(exc)

    async def main() -> tuple[list[tuple[bool, float]], tuple[bool, bool], Deadlines]:
        deadlines = Deadlines()
        tasks = []
        for name, duration in (("a", 0.05), ("b", 5.0), ("c", 5.0)):
            tasks.append(asyncio.create_task(handler(deadlines, name, duration)))
            await asyncio.sleep(0.02)
        results = list(await asyncio.gather(*tasks))
        own = await own_timeout(deadlines)
        await asyncio.sleep(0)
        return results, own, deadlines

    results, own, deadlines = asyncio.run(main())
    assert [expired for expired, _ in results] == [False, True, True]  # "a" returned in time
    assert expired_in_order == ["b", "c"]  # oldest first
    assert all(0.19 <= took < 0.35 for _, took in results[1:]), results  # each at its own limit
    assert own == (False, True)  # the handler's own TimeoutError, passed through as it was
    assert not deadlines._waiting  # every wait left, in time or not
