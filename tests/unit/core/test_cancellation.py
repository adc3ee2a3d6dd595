"""Cancellation safety of the request/respond path, tested at every schedule point.

For each ``n`` the requesting task is cancelled right after its ``n``-th scheduling step
(an instrument watches it), so the cancellation lands successively on every checkpoint of
the path — before the send, while waiting for inbox space, while waiting for the reply,
after the reply arrived — until ``n`` is past the end and the request completes. After every
run: no pending entry, no extra task, nothing in the caller's inbox, and a reply that came
after the cancellation counted as late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from jarvis_trio.agent import Agent, CustomAgent
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage

from .conftest import Idle, MeshFactory, full_inbox

MAX_STEPS = 40


class CancelAfterSteps(trio.abc.Instrument):
    """Cancel ``scope`` right after ``task`` has run ``steps`` scheduling steps."""

    def __init__(self, task: trio.lowlevel.Task, steps: int, scope: trio.CancelScope) -> None:
        self.task = task
        self.remaining = steps
        self.scope = scope

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.remaining -= 1
            if self.remaining == 0:
                self.scope.cancel()


async def cancelled_after(steps: int, call: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
    """Run ``call`` in a child task cancelled after ``steps`` of its steps."""
    outcome: list[Any] = []
    cancelled: list[bool] = []

    async def runner(task_status: trio.TaskStatus[trio.lowlevel.Task]) -> None:
        with trio.CancelScope() as scope:
            instrument = CancelAfterSteps(trio.lowlevel.current_task(), steps, scope)
            trio.lowlevel.add_instrument(instrument)
            try:
                task_status.started(trio.lowlevel.current_task())
                outcome.append(await call())
            finally:
                trio.lowlevel.remove_instrument(instrument)
        cancelled.append(scope.cancelled_caught)

    async with trio.open_nursery() as nursery:
        await nursery.start(runner)
    return cancelled[0], outcome[0] if outcome else None


def task_count() -> int:
    def walk(task: trio.lowlevel.Task) -> Iterator[trio.lowlevel.Task]:
        yield task
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                yield from walk(child)

    return sum(1 for _ in walk(trio.lowlevel.current_root_task()))  # type: ignore[arg-type]


class Counting(CustomAgent):
    """Answers after a few checkpoints of its own, counting what it handled."""

    role = "counting"
    handled = 0

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        for _ in range(3):
            await trio.lowlevel.checkpoint()
        type(self).handled += 1
        return {"n": message.data["n"]}


class Manual(CustomAgent):
    """Serves with receive()/respond() in its own loop."""

    role = "manual"
    handled = 0

    async def run(self) -> None:
        while True:
            message = await self.peers.receive()
            if message is not None and message.is_request:
                await trio.lowlevel.checkpoint()
                type(self).handled += 1
                await self.peers.respond(message, {"n": message.data["n"]})


async def settle(mesh: Mesh) -> None:
    await trio.testing.wait_all_tasks_blocked()


async def check_invariants(mesh: Mesh, caller: Agent, tasks_before: int) -> None:
    await settle(mesh)
    assert len(mesh.router.pending) == 0, "a pending entry was left behind"
    assert task_count() == tasks_before, "a task was left behind"
    assert await caller.peers.receive(timeout=0) is None, "a reply leaked into receive()"


@pytest.mark.parametrize("server", [Counting, Manual])
async def test_request_cancelled_at_every_step(make_mesh: MeshFactory, server: type[Any]) -> None:
    server.handled = 0
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(server)
        await settle(mesh)
        tasks_before = task_count()
        completed = cancelled_runs = 0
        for steps in range(1, MAX_STEPS):
            handled_before = server.handled
            late_before = mesh.late_replies
            cancelled, reply = await cancelled_after(
                steps,
                lambda steps=steps: caller.peers.request(server.role, {"n": steps}, timeout=60),
            )
            await check_invariants(mesh, caller, tasks_before)
            handled = server.handled - handled_before
            late = mesh.late_replies - late_before
            if cancelled:
                cancelled_runs += 1
                assert reply is None
                assert late == handled  # a reply after cancellation is late, never delivered
            else:
                completed += 1
                assert reply == {"n": steps}
                assert (handled, late) == (1, 0)
        assert cancelled_runs >= 1 and completed >= 1


async def test_request_cancelled_while_waiting_for_inbox_space(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with full_inbox(make_mesh) as (mesh, _, blocked):  # blocked never reads
        caller = await mesh.start_agent(Idle)
        await settle(mesh)
        tasks_before = task_count()
        outcomes = []
        for steps in range(1, 4):
            # step 1 ends parked on the full inbox; later steps never come: the request's
            # own timeout ends the wait instead
            cancelled, reply = await cancelled_after(
                steps, lambda: caller.peers.request(blocked.agent_id, {"n": 0}, timeout=5)
            )
            outcomes.append(cancelled)
            assert reply is None
            await check_invariants(mesh, caller, tasks_before)
        assert outcomes == [True, False, False]
        assert mesh.stats.backpressure_waits == 3
        message = await blocked.peers.receive(timeout=0)
        assert message is not None and message.data == {"fill": True}
        assert await blocked.peers.receive(timeout=0) is None  # no abandoned request got in


async def test_ask_async_and_check_inbox_cancelled_at_every_step(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    Counting.handled = 0
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Counting)
        await settle(mesh)
        tasks_before = task_count()
        for steps in range(1, 12):

            async def ask_and_check(steps: int = steps) -> Any:
                request_id = await caller.peers.ask_async("counting", {"n": steps}, timeout=5)
                return request_id, await caller.peers.check_inbox(request_id, timeout=5)

            cancelled, result = await cancelled_after(steps, ask_and_check)
            await settle(mesh)
            assert task_count() == tasks_before
            assert await caller.peers.receive(timeout=0) is None
            if not cancelled:
                assert result[1] == {"n": steps}
                assert caller.peers.inbox_status(result[0]) == "unknown"
        # whatever was abandoned mid-way is reaped at its deadline (virtual time)
        await trio.sleep(5.01)
        assert len(mesh.router.pending) == 0


async def test_cancelled_requests_leave_nothing_under_load(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    class Slowish(CustomAgent):
        role = "slowish"
        max_concurrency = 256
        handled = 0

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            await trio.sleep(0.01 * (message.data["n"] % 7))
            type(self).handled += 1
            return {"n": message.data["n"]}

    async with make_mesh() as mesh:
        callers = [await mesh.start_agent(Idle) for _ in range(8)]
        await mesh.start_agent(Slowish)
        await settle(mesh)
        tasks_before = task_count()
        results: list[Any] = []
        async with trio.open_nursery() as nursery:
            for i in range(200):

                async def one(i: int = i) -> None:
                    with trio.move_on_after(0.005 * (i % 11)):
                        results.append(await callers[i % 8].peers.request("slowish", {"n": i}))

                nursery.start_soon(one)
        await trio.sleep(1)  # virtual time: every handler has finished
        assert len(mesh.router.pending) == 0
        assert task_count() == tasks_before
        for caller in callers:
            assert await caller.peers.receive(timeout=0) is None
        assert all(r is not None for r in results)
        assert 0 < len(results) < Slowish.handled <= 200
        assert len(results) + mesh.late_replies == Slowish.handled
