"""PeerClient.wait_for_peers: wakes on directory changes, honours filters and its timeout."""

from __future__ import annotations

import trio

from jarvis_trio.peers.directory import PeerInfo

from .conftest import Echo, Idle, MeshFactory


async def test_returns_at_once_when_enough_peers_exist(
    make_mesh: MeshFactory, autojump_clock: object
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        with trio.fail_after(0.001):  # virtual time: it fails only if the call ever blocks
            assert await caller.peers.wait_for_peers(1, role="echo") is True


async def test_wakes_when_a_local_agent_joins(
    make_mesh: MeshFactory, autojump_clock: object
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        woke: list[float] = []

        async def waiter() -> None:
            assert await caller.peers.wait_for_peers(2, capability="echo")
            woke.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(5)  # virtual time: the waiter waits, and nothing wakes it
            await mesh.start_agent(Echo)
            assert woke == []  # one echo is not two
            await trio.sleep(5)  # still not woken 5 virtual seconds later
            started = trio.current_time()
            await mesh.start_agent(Echo)
        assert woke and woke[0] - started < 1


async def test_counts_remote_agents_and_never_the_caller(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        assert await caller.peers.wait_for_peers(1, role="caller", timeout=0) is False
        mesh.directory.set_remote_agents("other-node", [PeerInfo("caller-0000abcd", "caller")])
        with trio.fail_after(10):
            assert await caller.peers.wait_for_peers(1, role="caller")


async def test_times_out_with_false(make_mesh: MeshFactory, autojump_clock: object) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        before = trio.current_time()
        assert await caller.peers.wait_for_peers(3, timeout=2.5) is False
        assert trio.current_time() - before == 2.5


async def test_wakes_on_a_remote_change_even_with_a_warm_filter_cache(
    make_mesh: MeshFactory, autojump_clock: object
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        assert caller.peers.discover(role="caller") == []  # caches the empty answer
        woke = trio.Event()

        async def waiter() -> None:
            assert await caller.peers.wait_for_peers(1, role="caller", timeout=10)
            woke.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(1)  # virtual time: the waiter is parked on the directory
            started = trio.current_time()
            mesh.directory.set_remote_agents("other-node", [PeerInfo("caller-0000abcd", "caller")])
            await woke.wait()
        assert trio.current_time() - started < 0.001
