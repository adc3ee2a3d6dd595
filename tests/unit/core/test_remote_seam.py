"""The seam to the cross-node layer, exercised with two nodes in one process joined by a
loopback route that encodes every message with msgpack, as the wire does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage
from jarvis_trio.peers.router import RemoteRoute

from .conftest import Echo, Idle, MeshFactory


class Loopback:
    """A RemoteRoute to the other nodes of this process."""

    def __init__(self) -> None:
        self.nodes: dict[str, Mesh] = {}
        self.dead: set[str] = set()
        self.refuse = False
        self.sent = 0

    def node_alive(self, node_id: str) -> bool:
        return node_id in self.nodes and node_id not in self.dead

    async def send(self, node_id: str, message: IncomingMessage) -> bool:
        await trio.lowlevel.checkpoint()
        if self.refuse or not self.node_alive(node_id):
            return False
        self.sent += 1
        wire = msgspec.msgpack.encode(message)
        return self.nodes[node_id].router.deliver_inbound(
            msgspec.msgpack.decode(wire, type=IncomingMessage)
        )


def sync_directories(*meshes: Mesh) -> None:
    for mesh in meshes:
        for other in meshes:
            if other is not mesh:
                mesh.directory.set_remote_agents(other.node_id, other.directory.local_agents())


@asynccontextmanager
async def two_nodes(make_mesh: MeshFactory) -> AsyncIterator[tuple[Mesh, Mesh, Loopback]]:
    route = Loopback()
    async with make_mesh(node_name="node-a") as a, make_mesh(node_name="node-b") as b:
        route.nodes = {"node-a": a, "node-b": b}
        a.router.remote = route
        b.router.remote = route
        yield a, b, route


def test_loopback_is_a_remote_route() -> None:
    assert isinstance(Loopback(), RemoteRoute)


async def test_request_across_nodes_and_respond_by_return_path(make_mesh: MeshFactory) -> None:
    async with two_nodes(make_mesh) as (a, b, route):
        caller = await a.start_agent(Idle)
        echo = await b.start_agent(Echo)
        sync_directories(a, b)
        found = caller.peers.get_peer("echo")
        assert found is not None and (found.location, found.node_id) == ("remote", "node-b")
        reply = await caller.peers.request_message("echo", {"q": 1}, context={"m": "x"})
        assert reply is not None
        assert reply.data == {"echo": {"q": 1}, "from": caller.agent_id}
        assert (reply.sender, reply.sender_node, reply.context) == (
            echo.agent_id,
            "node-b",
            {"m": "x"},
        )
        assert route.sent == 2


async def test_local_agents_come_before_remote_ones(make_mesh: MeshFactory) -> None:
    async with two_nodes(make_mesh) as (a, b, _):
        caller = await a.start_agent(Idle)
        await b.start_agent(Echo)
        local = await a.start_agent(Echo)
        sync_directories(a, b)
        assert [p.location for p in caller.peers.discover(role="echo")] == ["local", "remote"]
        assert caller.peers.get_peer("echo").agent_id == local.agent_id  # type: ignore[union-attr]
        assert {p["location"] for p in caller.peers.list_peers()} == {"local", "remote"}


async def test_notify_and_broadcast_reach_remote_agents(make_mesh: MeshFactory) -> None:
    async with two_nodes(make_mesh) as (a, b, _):
        sender = await a.start_agent(Idle)
        twin_local = await a.start_agent(Idle)
        twin_remote = await b.start_agent(Idle)
        sync_directories(a, b)
        assert await sender.peers.notify(twin_remote.agent_id, {"n": 1})
        assert await sender.peers.broadcast({"n": 2}) == 2
        got = [await twin_remote.peers.receive(timeout=0) for _ in range(3)]
        assert [m.data if m else None for m in got] == [{"n": 1}, {"n": 2}, None]
        assert (await twin_local.peers.receive(timeout=0)).data == {"n": 2}  # type: ignore[union-attr]


async def test_a_known_dead_node_fails_requests_at_once(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with two_nodes(make_mesh) as (a, b, route):
        caller = await a.start_agent(Idle)
        await b.start_agent(Echo)
        sync_directories(a, b)
        route.dead.add("node-b")
        start = trio.current_time()
        assert await caller.peers.request("echo", {"q": 1}, timeout=30) is None
        assert await caller.peers.notify("echo", {"q": 1}) is False
        with pytest.raises(ValueError, match="could not send"):
            await caller.peers.ask_async("echo", {"q": 1})
        assert trio.current_time() == start


async def test_node_failed_releases_every_waiter_at_once(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with two_nodes(make_mesh) as (a, b, _):
        caller = await a.start_agent(Idle)
        silent = await b.start_agent(Idle)
        sync_directories(a, b)
        request_id = await caller.peers.ask_async(silent.agent_id, {"q": 0}, timeout=60)
        outcomes: list[Any] = []
        async with trio.open_nursery() as nursery:
            for n in range(3):

                async def ask(n: int = n) -> None:
                    outcomes.append(
                        await caller.peers.request(silent.agent_id, {"q": n}, timeout=60)
                    )

                nursery.start_soon(ask)
            await trio.sleep(1)  # virtual time: the node fails 1 s into the requests' wait
            assert a.router.pending.fail_node("node-b") == 4
        assert outcomes == [None, None, None]
        assert trio.current_time() == pytest.approx(1)
        assert await caller.peers.check_inbox(request_id) is None


async def test_directory_feed_for_the_cross_node_layer(make_mesh: MeshFactory) -> None:
    async with two_nodes(make_mesh) as (a, b, _):
        version = a.directory.version.value
        echo = await a.start_agent(Echo)
        assert a.directory.version.value == version + 1
        sync_directories(a, b)
        assert echo.agent_id in b.directory.registry()
        b.directory.drop_node("node-a")
        assert echo.agent_id not in b.directory.registry()
        async with trio.open_nursery() as nursery:
            seen: list[int] = []

            async def watch() -> None:
                seen.append(await a.directory.version.wait_transition())  # type: ignore[arg-type]

            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            await a.start_agent(Idle)
        assert seen


async def test_inbound_response_resolves_and_late_ones_are_counted(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with two_nodes(make_mesh) as (a, b, _):
        caller = await a.start_agent(Idle)
        silent = await b.start_agent(Idle)
        sync_directories(a, b)
        with trio.move_on_after(0.05):
            await caller.peers.request(silent.agent_id, {"q": 1})
        request = await silent.peers.receive(timeout=0)
        assert request is not None and request.sender_node == "node-a"
        assert not await silent.peers.respond(request, {"late": True})  # the requester is gone
        assert a.late_replies == 1
        assert await caller.peers.receive(timeout=0) is None


async def test_a_failing_remote_send_is_a_failed_notify(make_mesh: MeshFactory) -> None:
    async with two_nodes(make_mesh) as (a, b, route):
        sender = await a.start_agent(Idle)
        await b.start_agent(Echo)
        sync_directories(a, b)
        route.refuse = True
        assert await sender.peers.notify("echo", {"x": 1}) is False
        assert a.stats.notify_failed == 1
