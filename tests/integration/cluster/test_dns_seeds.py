"""Seeds by name: every address tried, names resolved again while alone, hostname advertise.

The names live in a resolver the test controls (``use_resolver``, the seam in
``jarvis_trio.cluster.addresses``); the addresses are real loopback sockets. ``127.0.0.3``
stands for a dead pod: nothing listens there, so datagrams to it are lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from jarvis_trio.cluster.addresses import use_resolver
from jarvis_trio.testing.ports import free_swim_port

from .conftest import Echo, NodeFactory, cluster_of, wait_discoverable

DEAD = "127.0.0.3"


class Names:
    """A resolver with a table the test edits; counts the lookups of each name."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: dict[str, int] = {}

    async def __call__(self, host: str, family: int) -> Sequence[str]:
        self.lookups[host] = self.lookups.get(host, 0) + 1
        await trio.lowlevel.checkpoint()
        if host not in self.table:
            raise OSError(f"no such name {host!r}")
        return list(self.table[host])


async def test_every_address_of_a_seed_name_is_tried_the_first_one_dead(
    start_node: NodeFactory,
) -> None:
    port = free_swim_port()
    names = Names({"seeds.swarm.test": [DEAD, "127.0.0.1"]})
    with use_resolver(names), trio.fail_after(10):
        async with (
            start_node("a", agents=[Echo], bind_port=port) as a,
            start_node("b", agents=[Echo], seed_nodes=f"seeds.swarm.test:{port}") as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            await wait_discoverable(a, nodes=1, agents=1)
            swim = cluster_of(b).swim
            assert (DEAD, port) in swim.protocol.seeds  # tried, and it never answered
            assert ("127.0.0.1", port) in swim.protocol.seeds


async def test_a_lone_node_resolves_its_seed_again_and_joins_where_it_moved(
    start_node: NodeFactory,
) -> None:
    port = free_swim_port()
    names = Names({"seeds.swarm.test": [DEAD]})  # the seed's pod is gone
    with use_resolver(names), trio.fail_after(15):
        async with start_node("b", agents=[Echo], seed_nodes=f"seeds.swarm.test:{port}") as b:
            swim = cluster_of(b).swim
            before = names.lookups["seeds.swarm.test"]
            async with start_node("a", agents=[Echo], bind_port=port) as a:
                # the seed comes back at another address; b is alone and asks again
                names.table["seeds.swarm.test"] = ["127.0.0.1"]
                await wait_discoverable(b, nodes=1, agents=1)
                await wait_discoverable(a, nodes=1, agents=1)
            assert names.lookups["seeds.swarm.test"] > before
            assert swim.stats()["seed_changes"] >= 1


async def test_advertise_host_may_be_a_name(start_node: NodeFactory) -> None:
    port = free_swim_port()
    names = Names({"node-a.swarm.test": ["127.0.0.1"], "seeds.swarm.test": ["127.0.0.1"]})
    with use_resolver(names), trio.fail_after(10):
        async with (
            start_node("a", agents=[Echo], bind_port=port, advertise_host="node-a.swarm.test") as a,
            start_node("b", agents=[Echo], seed_nodes=f"seeds.swarm.test:{port}") as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            assert names.lookups["node-a.swarm.test"] >= 1
            member = cluster_of(b).swim.protocol.member(cluster_of(a).swim.name)
            assert member is not None and member.meta.host == "127.0.0.1"
            (echo,) = [agent for agent in a.agents if isinstance(agent, Echo)]
            caller = next(agent for agent in b.agents if isinstance(agent, Echo))
            reply = await caller.peers.request(echo.agent_id, {"hello": 1}, timeout=5)
            assert reply is not None and reply["echo"] == {"hello": 1}
