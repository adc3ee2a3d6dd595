"""A request started by callback (``PeerClient._start_request``, what the asyncio host uses
instead of a worker task per request) ends, and is counted, exactly as an awaited one."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from jarvis_trio.errors import PayloadError

from .conftest import Echo, Idle, MeshFactory


class Done:
    """A ``done`` callback that records what it got and lets a test wait for it."""

    def __init__(self) -> None:
        self.values: list[dict[str, Any] | None] = []
        self.event = trio.Event()

    def __call__(self, value: dict[str, Any] | None) -> None:
        self.values.append(value)
        self.event.set()

    async def wait(self) -> None:
        with trio.fail_after(10):
            await self.event.wait()


async def test_a_started_request_gets_the_reply_and_is_counted_as_an_awaited_one(
    make_mesh: MeshFactory,
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        awaited = await caller.peers.request("echo", {"q": 1}, timeout=5)
        done = Done()
        started = caller.peers._start_request("echo", {"q": 1}, 5.0, None, done)
        assert started is not None
        assert done.values == [] and len(mesh.router.pending) == 1
        await done.wait()
        assert done.values == [awaited]
        assert len(mesh.router.pending) == 0
        counts = mesh.router.traffic.by_role["echo"]
        assert (counts.sent, counts.answered, counts.failed, counts.timed_out) == (2, 2, 0, 0)
        started.cancel()  # after the end: nothing left to cancel
        assert mesh.late_replies == 0


async def test_a_started_request_ends_at_its_deadline(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        done = Done()
        begin = trio.current_time()
        assert caller.peers._start_request(silent.agent_id, {"q": 1}, 2.5, None, done)
        await done.wait()
        assert 2.5 <= trio.current_time() - begin < 2.6
        assert done.values == [None]
        assert len(mesh.router.pending) == 0
        assert mesh.router.traffic.by_role["caller"].timed_out == 1


async def test_a_cancelled_started_request_leaves_no_entry_and_its_reply_is_late(
    make_mesh: MeshFactory,
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        done = Done()
        started = caller.peers._start_request(silent.agent_id, {"q": 1}, 5.0, None, done)
        assert started is not None
        started.cancel()
        assert len(mesh.router.pending) == 0
        request = await silent.peers.receive(timeout=0)
        assert request is not None and request.is_request
        assert await silent.peers.respond(request, {"a": 1}) is False
        assert mesh.late_replies == 1
        await trio.testing.wait_all_tasks_blocked()
        assert done.values == []


async def test_a_started_request_ends_with_none_when_the_node_stops(
    make_mesh: MeshFactory,
) -> None:
    done = Done()
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        assert caller.peers._start_request(silent.agent_id, {"q": 1}, 30.0, None, done)
    assert done.values == [None]


async def test_what_ends_at_once_or_cannot_start_without_waiting(make_mesh: MeshFactory) -> None:
    async with make_mesh(inbox_size=1) as mesh:
        caller = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        peers = caller.peers
        # an unresolved target: None at once, counted as a failed request
        done = Done()
        failed = mesh.router.stats.request_failed
        started = peers._start_request("ghost", {"q": 1}, 5.0, None, done)
        assert started is not None and done.values == [None]
        assert mesh.router.stats.request_failed == failed + 1
        started.cancel()  # a no-op
        # bad arguments raise as request() does, with nothing pending
        with pytest.raises(PayloadError):
            peers._start_request(silent.agent_id, {"q": {1, 2}}, 5.0, None, Done())
        with pytest.raises(ValueError, match="timeout"):
            peers._start_request(silent.agent_id, {"q": 1}, -1, None, Done())
        # a full inbox: nothing sent, pending or counted; the caller awaits request() instead
        assert await peers.notify(silent.agent_id, {"fill": 1})
        done = Done()
        sent = mesh.router.traffic.by_role["caller"].sent
        assert peers._start_request(silent.agent_id, {"q": 1}, 5.0, None, done) is None
        assert len(mesh.router.pending) == 0 and done.values == []
        assert mesh.router.traffic.by_role["caller"].sent == sent
        queued = await silent.peers.receive(timeout=0)
        assert queued is not None and queued.data == {"fill": 1}
        assert await silent.peers.receive(timeout=0) is None
