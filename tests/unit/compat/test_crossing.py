"""AsyncioCrossing: Trio tasks await coroutines on a real asyncio loop of another thread."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from jarvis_trio.compat._crossing import AsyncioCrossing
from jarvis_trio.errors import AsyncioCallCancelled

LIMIT = 10.0


class Marker(Exception):
    """A user exception type that must survive the crossing."""


@asynccontextmanager
async def loop_thread() -> AsyncIterator[tuple[asyncio.AbstractEventLoop, AsyncioCrossing]]:
    """An asyncio loop on a thread of its own, and a crossing to it; all stopped afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-asyncio", daemon=True)
    thread.start()
    crossing = AsyncioCrossing(loop)
    try:
        yield loop, crossing
    finally:
        with trio.CancelScope(shield=True):
            await crossing.wait_idle()
            crossing.close()
            loop.call_soon_threadsafe(loop.stop)
            await trio.to_thread.run_sync(thread.join)
            loop.close()


def hold(loop: asyncio.AbstractEventLoop) -> threading.Event:
    """Keep ``loop`` busy (its thread blocked) until the returned event is set."""
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait, LIMIT)
    return release


async def test_many_concurrent_calls_each_get_their_own_outcome() -> None:
    async def double(n: int) -> int:
        asyncio.get_running_loop()  # really on asyncio
        await asyncio.sleep((n % 7) / 1000)  # unequal durations: calls end out of order
        if n % 10 == 3:
            raise Marker(n)
        return 2 * n

    outcomes: dict[int, object] = {}

    async def one(crossing: AsyncioCrossing, n: int) -> None:
        try:
            outcomes[n] = await crossing.run(double(n))
        except Marker as exc:
            outcomes[n] = exc

    with trio.fail_after(LIMIT):
        async with loop_thread() as (_, crossing), trio.open_nursery() as nursery:
            for n in range(200):  # waiters come and go: the leadership passes many times
                nursery.start_soon(one, crossing, n)
    for n in range(200):
        got = outcomes[n]
        if n % 10 == 3:
            assert isinstance(got, Marker)
            assert got.args == (n,)
        else:
            assert got == 2 * n


@pytest.mark.parametrize("position", ["leader", "parked"])
async def test_a_cancelled_waiter_returns_after_its_task_unwound(position: str) -> None:
    """Cancelled as the leader (the first to wait) or parked behind another waiter: the
    asyncio task's ``finally`` has run before the Trio caller sees its cancellation, and the
    other waiter, whose call ends only after that, is served all the same."""
    unwound = threading.Event()
    started = threading.Event()
    other_waiting = trio.Event()

    async def hang() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # unwinding takes a while
            unwound.set()

    async def after_unwound() -> str:
        await asyncio.to_thread(unwound.wait, LIMIT)
        return "served"

    served: list[str] = []

    async def other() -> None:
        call = crossing.run(after_unwound())
        other_waiting.set()
        served.append(await call)

    async def cancel_once_started(scope: trio.CancelScope) -> None:
        await trio.to_thread.run_sync(started.wait, LIMIT)
        if position == "leader":
            nursery.start_soon(other)  # parks behind the hanging call, which leads
            await other_waiting.wait()
            await trio.testing.wait_all_tasks_blocked()
        scope.cancel()

    with trio.fail_after(LIMIT):
        async with loop_thread() as (_, crossing), trio.open_nursery() as nursery:
            if position == "parked":
                nursery.start_soon(other)  # leads; the hanging call parks behind it
                await other_waiting.wait()
            with trio.CancelScope() as scope:
                nursery.start_soon(cancel_once_started, scope)
                await crossing.run(hang())
            assert scope.cancelled_caught
            assert unwound.is_set()  # unwound before the cancellation reached the caller
    assert served == ["served"]


async def test_cancelled_before_the_task_started_it_never_runs() -> None:
    """Start and cancel reach the loop together: the task is cancelled before its first
    step, the coroutine never runs (and is closed, not left un-awaited)."""
    ran = threading.Event()

    async def body() -> None:
        ran.set()

    with trio.fail_after(LIMIT):
        async with loop_thread() as (loop, crossing):
            release = hold(loop)

            async def release_once_cancel_sent() -> None:
                await trio.testing.wait_all_tasks_blocked()  # the caller waits, shielded
                release.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(release_once_cancel_sent)
                with trio.CancelScope() as scope:
                    scope.cancel()  # the first checkpoint, inside run(), is cancelled
                    await crossing.run(body())
            assert scope.cancelled_caught
            # the crossing still serves calls afterwards
            assert await crossing.run(asyncio.sleep(0, "after")) == "after"
    assert not ran.is_set()


async def test_a_task_cancelled_on_the_asyncio_side_raises_asyncio_call_cancelled() -> None:
    async def cancel_itself() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    with trio.fail_after(LIMIT):
        async with loop_thread() as (_, crossing):
            with pytest.raises(AsyncioCallCancelled, match="cancel_itself"):
                await crossing.run(cancel_itself())


async def test_a_closed_loop_or_crossing_refuses_calls_and_closes_the_coroutine() -> None:
    async def never() -> None:
        raise AssertionError("must not run")

    loop = asyncio.new_event_loop()
    loop.close()
    crossing = AsyncioCrossing(loop)
    coro = never()
    with pytest.raises(RuntimeError):
        await crossing.run(coro)
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"  # no "never awaited" warning
    crossing.close()
    coro = never()
    with pytest.raises(RuntimeError, match="no longer served"):
        await crossing.run(coro)
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"


def test_outcomes_handed_back_after_close_are_dropped() -> None:
    """The host closes a lane's crossing when its Trio run has ended; an asyncio task
    finishing later must not write to the released descriptor."""
    finished: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        crossing = AsyncioCrossing(loop)

        async def trio_side() -> None:
            with trio.move_on_after(0.01):
                await crossing.run(asyncio.sleep(0.05))  # outlasts the Trio side's deadline

        # The Trio side gives up (cancelled) and waits until the task unwound; then closes.
        await asyncio.to_thread(trio.run, trio_side)
        crossing.close()

        async def late() -> None:
            finished.append("ran")

        with pytest.raises(RuntimeError, match="no longer served"):
            await asyncio.to_thread(trio.run, crossing.run, late())
        finished.append("done")

    asyncio.run(main())
    assert finished == ["done"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"),
    reason="needs /proc/self/fd (Linux) to count open descriptors",
)
@pytest.mark.parametrize("loop_state", ["running", "closed"])
async def test_close_releases_both_descriptors(loop_state: str) -> None:
    """Calls wake the loop through a descriptor it watches (and come back through another);
    closing the crossing unregisters the first on the loop's thread when the loop still runs,
    and closes both, whether the loop still runs or was closed first."""
    before = _open_fds()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-asyncio", daemon=True)
    thread.start()
    with_loop = _open_fds()
    crossing = AsyncioCrossing(loop)
    with trio.fail_after(LIMIT):
        for n in range(3):
            assert await crossing.run(asyncio.sleep(0, n)) == n
        assert _open_fds() == with_loop + 2  # the two doorbells
        if loop_state == "running":
            crossing.close()
            # once the loop ran what close() sent it, the reader is gone
            done = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
            await trio.to_thread.run_sync(done.result, LIMIT)
            assert _open_fds() == with_loop
        loop.call_soon_threadsafe(loop.stop)
        await trio.to_thread.run_sync(thread.join)
        loop.close()
        crossing.close()  # again, or first with the loop closed
    assert _open_fds() == before
