"""A node that learns of 1,100 members -- more than ZeroMQ's default socket table holds --
stays up, keeps its open peer connections under ``max_peer_connections``, and still reaches
the peers it talks to. Real nodes over UDP and ZeroMQ on 127.0.0.1; the extra members are
announced to the node's cross-node layer as membership events (what SWIM hands it), with
data ports nothing listens on, so every one of them costs a connection attempt."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from jarvis_trio.swim import Member, MemberState
from jarvis_trio.swim.members import NodeMeta

from .conftest import LAN_SWIM, Echo, NodeFactory, cluster_of, seed_of, wait_discoverable

CAP = 32
MEMBERS = 1100
# SWIM at its LAN timings (LAN_SWIM), not the tests' tenfold ones: the churn of 1,100
# unreachable members loads the node's CPU, and with a 50 ms probe timeout b could declare a
# dead -- a false death that has nothing to do with the socket budget under test.


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# 1,100 connection attempts are CPU work: a quarter of a minute on an idle machine, minutes on
# a loaded one; the bound leaves time to close the nodes inside pytest's timeout
@pytest.mark.timeout(300)
async def test_eleven_hundred_members_keep_the_node_up_under_the_socket_cap(
    start_node: NodeFactory,
) -> None:
    dead = closed_port()
    with trio.fail_after(200):
        async with (
            start_node("a", agents=[Echo], max_peer_connections=CAP, **LAN_SWIM) as a,
            start_node("b", agents=[Echo], seed_nodes=seed_of(a), **LAN_SWIM) as b,
        ):
            await wait_discoverable(a, nodes=1, agents=1)
            await wait_discoverable(b, nodes=1, agents=1)
            cluster = cluster_of(a)
            for index in range(MEMBERS):
                meta = NodeMeta("127.0.0.1", 20_000 + index % 1000, data_port=dead)
                cluster._apply(Member(f"ghost-{index:04d}", 1, MemberState.ALIVE, meta))
            assert len(cluster.live_nodes()) == MEMBERS + 1

            def stat(name: str) -> int:
                return cluster.stats()[f"bridge_{name}"]

            # every ghost's directory sync asks it for its agents: one connection each, opened
            # when the sync's task sends (or when its batch ends), so once every task waits
            await trio.testing.wait_all_tasks_blocked()
            assert stat("connects") + stat("connect_failures") >= MEMBERS
            for round_ in range(5):
                asked = a.agents[0].peers
                # the first one crosses the churn of 1,100 unreachable members being asked
                # for their agents through 32 sockets: seconds on a loaded machine
                reply = await asked.request("echo", {"round": round_}, timeout=30)
                assert reply is not None, (round_, cluster.stats(), cluster_of(b).stats())
                assert reply["sender_node"] == "a"
                back = await b.agents[0].peers.request("echo", {"round": round_}, timeout=30)
                assert back is not None, (round_, cluster.stats(), cluster_of(b).stats())
                assert back["sender_node"] == "b"
            assert stat("connect_failures") == 0
            assert stat("peer_sockets_peak") <= CAP
            assert stat("peer_sockets_open") <= CAP
            assert a.state == b.state == "running"
