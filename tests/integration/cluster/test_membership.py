"""The public membership API on real p2p nodes (UDP + ZeroMQ on 127.0.0.1): members(),
membership_events() and the agent hooks for remote agents appearing and vanishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from trio_util import AsyncValue

from jarvis_trio.agent import CustomAgent
from jarvis_trio.mesh import open_mesh
from jarvis_trio.peers.directory import PeerInfo

from .conftest import Echo, NodeFactory, cluster_of, seed_of, wait_discoverable


class Watcher(CustomAgent):
    """Records every remote agent that appears or vanishes."""

    role = "watcher"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.seen: list[tuple[str, str, str | None]] = []
        self.count = AsyncValue(0)

    async def on_peer_joined(self, info: PeerInfo) -> None:
        self.seen.append(("joined", info.agent_id, None))
        self.count.value += 1

    async def on_peer_left(self, info: PeerInfo, reason: str) -> None:
        self.seen.append(("left", info.agent_id, reason))
        self.count.value += 1


async def test_members_events_and_peer_hooks_across_a_join_and_a_leave(
    start_node: NodeFactory,
) -> None:
    with trio.fail_after(15):
        async with start_node("a", agents=[Watcher]) as a:
            watcher = a.agents[0]
            assert isinstance(watcher, Watcher)
            async with a.membership_events(agents=True) as events:
                async with start_node("b", agents=[Echo, Echo], seed_nodes=seed_of(a)) as b:
                    await wait_discoverable(a, nodes=1, agents=2)
                    await watcher.count.wait_value(2)
                    members = {m.name: m for m in a.members()}
                    assert set(members) == {"a", "b"}
                    assert members["a"].local and members["a"].agents == 1
                    assert members["b"].state == "alive" and members["b"].agents == 2
                    host, port = cluster_of(b).swim.address[:2]
                    assert members["b"].address == f"{host}:{port}"
                    assert members["b"].data_port == cluster_of(b).bridge.port
                    assert members["b"].epoch == cluster_of(b).swim.protocol.epoch > 0
                    assert members["b"].as_dict()["epoch"] == members["b"].epoch
                    assert a.joined and a.ready and b.joined and b.ready
                    echo_ids = sorted(agent.agent_id for agent in b.agents)
                # b left gracefully: its agents vanish with reason "left"
                await watcher.count.wait_value(4)
                kinds: list[tuple[str, Any]] = []
                async for event in events:
                    if event.member is not None:
                        kinds.append((event.kind, event.member.name))
                    elif event.agent is not None:
                        kinds.append((event.kind, event.agent.agent_id))
                    if event.kind == "left":
                        break
            assert ("joined", "b") in kinds
            assert sorted(k[1] for k in kinds if k[0] == "agent_added") == echo_ids
            assert {m.name: m.state for m in a.members()}["b"] == "left"
            assert sorted(watcher.seen) == sorted(
                [("joined", i, None) for i in echo_ids] + [("left", i, "left") for i in echo_ids]
            )


async def test_an_agent_is_told_of_the_remote_agents_known_before_its_setup(
    start_node: NodeFactory,
) -> None:
    # joining is part of starting, so the joiner's agents start with the seed's agents known
    # already: each is announced once, after setup(), and later changes follow in order
    with trio.fail_after(15):
        async with start_node("a", agents=[Echo, Echo]) as a:
            echo_ids = sorted(agent.agent_id for agent in a.agents)
            async with start_node("b", agents=[Watcher], seed_nodes=seed_of(a)) as b:
                watcher = b.agents[0]
                assert isinstance(watcher, Watcher)
                await watcher.count.wait_value(2)
                assert sorted(watcher.seen) == [("joined", i, None) for i in echo_ids]
                # an agent started later on a running node is told of them as well
                late = await b.start_agent(Watcher)
                assert isinstance(late, Watcher)
                await late.count.wait_value(2)
                assert sorted(late.seen) == [("joined", i, None) for i in echo_ids]
                added = await a.start_agent(Echo)
                await watcher.count.wait_value(3)
                await late.count.wait_value(3)
                for agent in (watcher, late):
                    assert agent.seen[2] == ("joined", added.agent_id, None)
            # never twice: the announcements and the change events do not overlap
            assert watcher.count.value == late.count.value == 3


async def test_a_single_node_answers_with_itself(tmp_path: Path) -> None:
    config = {"node_name": "solo", "blob_storage_path": str(tmp_path / "b")}
    async with open_mesh(config, agents=[Echo], env_file=None, environ={}) as mesh:
        (me,) = mesh.members()
        assert (me.name, me.state, me.local, me.agents) == ("solo", "alive", True, 1)
        assert mesh.joined and mesh.ready
        stream = mesh.membership_events()
    assert [e async for e in stream] == []  # the node stopped: the stream ended


async def test_a_seeded_node_is_not_ready_until_it_joined(start_node: NodeFactory) -> None:
    with trio.fail_after(10):
        async with start_node("lonely", seed_nodes="127.0.0.1:9", join_timeout=0.2) as lonely:
            assert lonely.state == "running"
            assert not lonely.joined and not lonely.ready
