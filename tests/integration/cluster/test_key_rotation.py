"""Rotating the cluster key of a running 3-node cluster while requests flow.

The operator's sequence (install everywhere, use everywhere, remove everywhere), one node at
a time with traffic in between, on real SWIM and ZeroMQ/CURVE sockets: no request lost, no
node declared dead, and the old key refused once removed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import trio
from trio_util import AsyncValue

from jarvis_trio.mesh import Mesh
from jarvis_trio.swim import Keyring, codec, open_swim_node
from jarvis_trio.swim.keyring import fingerprint

from .conftest import KEY, Caller, Echo, NodeFactory, cluster_of, seed_of, wait_discoverable

NEW_KEY = "the-next-cluster-secret-of-32-chars"
NAMES = ("a", "b", "c")


class Traffic:
    """Each node's caller asks the echo agents of the two other nodes, in turn, forever."""

    def __init__(self) -> None:
        self.answered = AsyncValue(0)
        self.lost: list[tuple[str, str, int]] = []

    async def run(self, mesh: Mesh, me: str) -> None:
        caller = mesh.get_agent(f"caller-{me}")
        assert caller is not None
        others = [n for n in NAMES if n != me]
        i = 0
        while True:
            target = f"echo-{others[i % 2]}"
            reply = await caller.peers.request(target, {"i": i}, timeout=10)
            if reply is None or reply.get("echo") != {"i": i}:
                self.lost.append((me, target, i))
            else:
                self.answered.value += 1
            i += 1

    async def progress(self, count: int) -> None:
        """Wait until ``count`` more requests have been answered."""
        goal = self.answered.value + count
        await self.answered.wait_value(lambda v: v >= goal)


def verified_by(mesh: Mesh, key: str) -> int:
    assert mesh.keyring is not None
    wanted = fingerprint(key)
    return sum(info.verified for info in mesh.keyring.list() if info.fingerprint == wanted)


async def wait_for(nodes: list[Mesh], condition: Callable[[Mesh], bool]) -> None:
    """Re-checked whenever the nodes' SWIM cores handle something (no polling)."""
    for mesh in nodes:
        await cluster_of(mesh).swim.wait_until(lambda m=mesh: condition(m))  # type: ignore[misc]


def swim_received(mesh: Mesh) -> int:
    return cluster_of(mesh).swim.protocol.rx_datagrams


async def swim_rounds(nodes: list[Mesh], count: int) -> None:
    """Wait until every node has received ``count`` more SWIM datagrams (a few periods)."""
    goals = {id(m): swim_received(m) + count for m in nodes}
    await wait_for(nodes, lambda m: swim_received(m) >= goals[id(m)])


async def test_rotating_the_key_under_load_loses_nothing(start_node: NodeFactory) -> None:
    with trio.fail_after(60):
        extra: dict[str, Any] = {"cluster_key": KEY}
        async with (
            start_node("a", agents=[Echo("echo-a"), Caller("caller-a")], **extra) as a,
            start_node(
                "b", agents=[Echo("echo-b"), Caller("caller-b")], seed_nodes=seed_of(a), **extra
            ) as b,
            start_node(
                "c", agents=[Echo("echo-c"), Caller("caller-c")], seed_nodes=seed_of(a), **extra
            ) as c,
        ):
            nodes = [a, b, c]
            for mesh in nodes:
                await wait_discoverable(mesh, nodes=2, agents=4)
            traffic = Traffic()
            async with trio.open_nursery() as nursery:
                for mesh, name in zip(nodes, NAMES, strict=True):
                    nursery.start_soon(traffic.run, mesh, name)
                await traffic.progress(30)
                for step in ("install", "use", "remove"):
                    for mesh in nodes:  # one node at a time, traffic in between
                        assert mesh.keyring is not None
                        if step == "install":
                            assert mesh.keyring.install(NEW_KEY)
                        elif step == "use":
                            mesh.keyring.use(NEW_KEY)
                        else:
                            assert mesh.keyring.remove(KEY)
                        await traffic.progress(10)
                        await swim_rounds(nodes, 12)
                    if step == "use":  # every node now hears the new key from every other
                        await wait_for(nodes, lambda m: verified_by(m, NEW_KEY) > 20)
                await traffic.progress(30)
                nursery.cancel_scope.cancel()
            assert traffic.lost == []
            for mesh in nodes:
                cluster = cluster_of(mesh)
                assert sorted(cluster.live_nodes()) == sorted(n for n in NAMES if n != mesh.node_id)
                assert cluster.swim.stats().get("declared_dead", 0) == 0
                assert cluster.swim.stats().get("drop_auth", 0) == 0  # no datagram refused
                assert mesh.keyring is not None
                assert [k.fingerprint for k in mesh.keyring.list()] == [fingerprint(NEW_KEY)]

            # the old key is refused: a datagram sealed with it, and a node that holds only it
            swim_a = cluster_of(a).swim
            refused = swim_a.stats().get("drop_auth", 0)
            ping = codec.header_ping(1, codec.encode_name("a")) + b"\x00"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.sendto(Keyring([KEY], "jarvis").seal(ping), swim_a.address)
            await swim_a.wait_until(lambda: swim_a.stats().get("drop_auth", 0) > refused)
            refused = swim_a.stats().get("drop_auth", 0)
            async with open_swim_node(
                name="stale",
                bind=("127.0.0.1", 0),
                seeds=[swim_a.address],
                cluster_key=KEY.encode(),
            ) as stale:
                await swim_a.wait_until(lambda: swim_a.stats().get("drop_auth", 0) > refused)
                assert [m.name for m in stale.members()] == ["stale"]
            assert "stale" not in {m.name for m in swim_a.members()}
