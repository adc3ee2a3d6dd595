"""The hand-off lists between Trio and the I/O thread: one wake-up per burst, bounds, credit."""

from __future__ import annotations

import select
import threading

import pytest
import trio

from jarvis_trio.transport.handoff import Credits, Doorbell, Inbox, Outbox, RingBeforeWait


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


def test_deferred_outbox_rings_only_when_flushed() -> None:
    bell = Doorbell()
    outbox: Outbox[int] = Outbox(bell)
    outbox.defer_rings(True)
    outbox.put(1)
    outbox.put(2)
    assert not readable(bell)  # owed, not rung
    outbox.flush()
    assert readable(bell)
    assert outbox.take() == [1, 2]
    outbox.flush()  # nothing owed: no ring
    assert not readable(bell)
    outbox.put(3)
    outbox.defer_rings(False)  # switching back rings what is owed
    assert readable(bell)
    assert outbox.take() == [3]
    outbox.put(4)  # immediate again
    assert readable(bell)
    bell.close()


def test_outbox_take_unrung_then_clear_never_loses_a_ring() -> None:
    bell = Doorbell()
    outbox: Outbox[int] = Outbox(bell)
    outbox.put(1)
    assert outbox.take_unrung() == [1]
    assert readable(bell)  # left for the caller to clear once it acted on the items
    outbox.put(2)  # queued (and rung) between the take and the clear
    assert not outbox.clear_if_idle()  # its ring is gone with the first: take it now
    assert not readable(bell)
    assert outbox.take_unrung() == [2]
    assert outbox.clear_if_idle() and not readable(bell)
    outbox.put(3)  # after the clear: rings as usual
    assert readable(bell)
    bell.close()


async def test_ring_before_wait_rings_once_the_batch_yields() -> None:
    bell = Doorbell()
    outbox: Outbox[int] = Outbox(bell)
    outbox.defer_rings(True)
    instrument = RingBeforeWait(outbox)
    trio.lowlevel.add_instrument(instrument)
    try:
        outbox.put(1)
        assert not readable(bell)  # still inside the scheduling batch that queued it
        await trio.lowlevel.checkpoint()  # the batch ends: Trio prepares to wait for I/O
        assert readable(bell)
        assert outbox.take() == [1]
    finally:
        trio.lowlevel.remove_instrument(instrument)
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


async def test_credits_bound_in_flight_frames_per_peer() -> None:
    credits = Credits(trio.lowlevel.current_trio_token(), 2)
    assert credits.try_take("a") and credits.try_take("a")
    assert not credits.try_take("a")
    assert credits.try_take("b")  # another peer is not held back
    assert credits.in_flight("a") == 2
    credits.settle({"a": 1})
    assert credits.in_flight("a") == 1 and credits.try_take("a")


async def test_a_waiting_sender_is_woken_when_the_thread_settles() -> None:
    credits = Credits(trio.lowlevel.current_trio_token(), 1)
    assert credits.try_take("a")
    woken = trio.Event()

    async def sender() -> None:
        await credits.wait("a")
        assert credits.try_take("a")
        woken.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not woken.is_set()
            thread = threading.Thread(target=credits.settle, args=({"a": 1},))
            thread.start()
            await woken.wait()
            thread.join()


async def test_forget_drops_balanced_counters_only() -> None:
    credits = Credits(trio.lowlevel.current_trio_token(), 4)
    credits.try_take("a")
    credits.forget("a")
    assert credits.in_flight("a") == 1
    credits.settle({"a": 1})
    credits.forget("a")
    assert credits.in_flight("a") == 0
    assert "a" not in credits._sent and "a" not in credits._settled
