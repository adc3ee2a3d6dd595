"""The agent inbox: FIFO within its bound, hand-off to waiting receivers, backpressure,
cancellation of waiters, close; plus a model-based property test."""

from __future__ import annotations

from collections import deque

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_trio.peers.inbox import AgentInbox
from jarvis_trio.peers.messages import NOTIFY, IncomingMessage


def msg(n: int) -> IncomingMessage:
    return IncomingMessage("s", "n1", NOTIFY, {"n": n})


def number(message: IncomingMessage | None) -> int | None:
    return None if message is None else message.data["n"]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    capacity=st.integers(min_value=1, max_value=5),
    ops=st.lists(st.one_of(st.just("get"), st.integers(min_value=0, max_value=99)), max_size=60),
)
def test_put_and_get_nowait_follow_a_bounded_fifo(capacity: int, ops: list[object]) -> None:
    inbox = AgentInbox(capacity)
    model: deque[int] = deque()
    for op in ops:
        if op == "get":
            expected = model.popleft() if model else None
            assert number(inbox.get_nowait()) == expected
        else:
            assert isinstance(op, int)
            accepted = inbox.put_nowait(msg(op))
            assert accepted == (len(model) < capacity)
            if accepted:
                model.append(op)
        assert len(inbox) == len(model)


async def test_a_waiting_receiver_gets_the_message_handed_over() -> None:
    inbox = AgentInbox(1)
    got: list[IncomingMessage | None] = []
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            got.append(await inbox.wait())

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert inbox.waiting == 1
        assert inbox.put_nowait(msg(1))
        assert len(inbox) == 0  # handed over, not queued
    assert number(got[0]) == 1
    assert inbox.waiting == 0


async def test_blocked_senders_get_in_in_order_as_space_frees(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbox = AgentInbox(1)
    assert inbox.put_nowait(msg(0))
    results: list[tuple[int, bool]] = []
    async with trio.open_nursery() as nursery:
        for n in (1, 2):

            async def send(n: int = n) -> None:
                results.append((n, await inbox.put(msg(n), trio.current_time() + 10)))

            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
        assert [number(inbox.get_nowait()) for _ in range(1)] == [0]
        await trio.testing.wait_all_tasks_blocked()
        assert number(inbox.get_nowait()) == 1
        await trio.testing.wait_all_tasks_blocked()
        assert number(inbox.get_nowait()) == 2
    assert results == [(1, True), (2, True)]


async def test_a_sender_gives_up_at_its_deadline_and_leaves_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbox = AgentInbox(1)
    assert inbox.put_nowait(msg(0))
    assert not await inbox.put(msg(1), trio.current_time() + 2)
    assert trio.current_time() == 2
    assert number(inbox.get_nowait()) == 0
    assert inbox.get_nowait() is None  # the abandoned message never got in


async def test_cancelled_receiver_is_not_handed_anything(
    autojump_clock: trio.abc.Clock,
) -> None:
    inbox = AgentInbox(2)
    with trio.move_on_after(0.01):
        await inbox.wait()
    assert inbox.waiting == 0
    assert inbox.put_nowait(msg(5))
    assert number(inbox.get_nowait()) == 5


async def test_a_receiving_loops_abort_serves_every_park_it_is_passed_to(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The agent loop builds its abort function once and parks with it again and again: each
    cancelled park leaves the waiting list, and a later one still receives."""
    inbox = AgentInbox(2)
    task = trio.lowlevel.current_task()
    abort = inbox.receiver_abort(task)
    for _ in range(3):
        with trio.move_on_after(0.01):
            await inbox.park(task, abort)
        assert inbox.waiting == 0
        assert inbox.put_nowait(msg(7))  # queued, not handed to the cancelled receiver
        assert number(inbox.get_nowait()) == 7
    async with trio.open_nursery() as nursery:
        got: list[IncomingMessage | None] = []

        async def loop() -> None:
            me = trio.lowlevel.current_task()
            mine = inbox.receiver_abort(me)
            got.append(await inbox.park(me, mine))
            got.append(await inbox.park(me, mine))

        nursery.start_soon(loop)
        for n in (1, 2):
            await trio.testing.wait_all_tasks_blocked()
            assert inbox.waiting == 1 and inbox.put_nowait(msg(n))
    assert [number(m) for m in got] == [1, 2]


async def test_close_releases_everyone() -> None:
    inbox = AgentInbox(1)
    assert inbox.put_nowait(msg(0))
    outcomes: list[object] = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            outcomes.append(await inbox.put(msg(1), trio.current_time() + 100))

        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        inbox.close()
    assert outcomes == [False]
    assert not inbox.put_nowait(msg(2))
    assert await inbox.wait() is None
    other = AgentInbox(1)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            outcomes.append(await other.wait())

        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        other.close()
    assert outcomes == [False, None]


async def test_stop_request_cancels_an_idle_run_scope_at_once() -> None:
    inbox = AgentInbox(4)
    inbox.workers = 1
    assert inbox.put_nowait(msg(1))
    with trio.CancelScope() as scope:
        inbox.run_scope = scope
        inbox.request_stop()
        assert inbox.get_nowait() is None  # queued work is not started after a stop request
        await inbox.wait()
    assert scope.cancelled_caught
