"""The hand-off lists between Trio and the I/O thread: one wake-up per burst, bounds."""

from __future__ import annotations

import select

import pytest
import trio

from jarvis_trio.transport.handoff import Doorbell, Inbox, Outbox


def readable(bell: Doorbell) -> bool:
    ready, _, _ = select.select([bell.fileno()], [], [], 0)
    return bool(ready)


def test_outbox_rings_once_per_burst_and_take_rearms() -> None:
    bell = Doorbell()
    rings = 0
    original = bell.ring

    def counting_ring() -> None:
        nonlocal rings
        rings += 1
        original()

    bell.ring = counting_ring  # type: ignore[method-assign]
    outbox: Outbox[int] = Outbox(bell)
    for i in range(100):
        outbox.put(i)
    assert rings == 1 and readable(bell)  # empty -> non-empty only
    assert outbox.take() == list(range(100))
    assert not readable(bell)
    assert outbox.take() == []
    outbox.put(100)
    assert rings == 2 and readable(bell)
    bell.close()
    bell.ring()  # ignored after close
    bell.close()


def test_a_put_after_the_take_cleared_the_doorbell_rings_again() -> None:
    bell = Doorbell()
    outbox: Outbox[int] = Outbox(bell)
    outbox.put(1)
    assert outbox.take() == [1] and not readable(bell)
    outbox.put(2)
    assert readable(bell)
    assert outbox.take() == [2]
    bell.close()


async def test_inbox_take_survives_a_stale_ring_without_spinning() -> None:
    inbox: Inbox[int] = Inbox(8, lambda: None)
    inbox.post([1])
    assert inbox.take_nowait() == [1]
    inbox._doorbell.ring()  # a ring whose items were already taken
    received: list[int] = []

    async def consumer() -> None:
        received.extend(await inbox.take())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.testing.wait_all_tasks_blocked()  # the stale ring was consumed
            assert received == [] and not readable(inbox._doorbell)
            inbox.post([2])
    assert received == [2]
    inbox.close()
    inbox.release()


async def test_inbox_wakes_its_consumer_from_another_thread() -> None:
    inbox: Inbox[int] = Inbox(8, lambda: None)

    def producer() -> None:
        inbox.post([1, 2])
        inbox.post([3])

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, producer)
            got: list[int] = []
            while len(got) < 3:
                got += await inbox.take()
    assert got == [1, 2, 3]
    inbox.close()
    assert await inbox.take() == []
    inbox.release()


async def test_full_inbox_pauses_and_the_consumers_take_resumes_it() -> None:
    resumed: list[bool] = []
    inbox: Inbox[int] = Inbox(3, lambda: resumed.append(True))
    assert inbox.room() == 3
    assert inbox.post([1, 2]) == 1
    assert inbox.take_nowait() == [1, 2]
    assert resumed == []  # never paused, nothing to resume
    assert inbox.post([1, 2, 3]) == 0  # full: the thread stops reading
    assert inbox.room() == 0
    assert resumed == []
    assert inbox.take_nowait() == [1, 2, 3]
    assert resumed == [True]
    assert inbox.room() == 3
    assert inbox.take_nowait() == []
    assert resumed == [True]  # no resume without a pause
    inbox.close()
    inbox.release()


def test_inbox_needs_room() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(0, lambda: None)
