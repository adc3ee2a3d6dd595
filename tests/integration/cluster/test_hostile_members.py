"""What a cluster member can no longer do with a valid key: answer requests sent to another
node, speak for another node's agents, or deliver nesting a local send would refuse. Real
nodes over UDP and CURVE-encrypted ZeroMQ on 127.0.0.1; the hostile member writes raw
envelopes on its own authenticated data connection."""

from __future__ import annotations

import time

import trio
import trio.testing

from jarvis_trio.transport import Envelope, Kind

from .conftest import (
    KEY,
    LAN_SWIM,
    Caller,
    Echo,
    NodeFactory,
    cluster_of,
    seed_of,
    wait_discoverable,
)

# Each test starts its nodes, and the cluster forms, inside one bound: generous, since a loaded
# machine takes seconds for what an idle one does in a fraction. SWIM at LAN timings: a false
# death (a 50 ms probe timeout missed under load) would fail the pending request under test.
BOUND = 60
KEYED = {"cluster_key": KEY, **LAN_SWIM}


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_a_reply_from_another_node_than_the_one_asked_is_refused(
    start_node: NodeFactory,
) -> None:
    with trio.fail_after(BOUND):
        async with (
            start_node("a", agents=[Echo], **KEYED) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a), **KEYED) as b,
            start_node("c", agents=[Caller], seed_nodes=seed_of(a), **KEYED) as c,
        ):
            await wait_discoverable(b, nodes=2, agents=2)
            await cluster_of(c).wait_until(lambda: len(cluster_of(c).live_nodes()) == 2)
            caller = b.agents[0]
            got: list[dict[str, object] | None] = []
            async with trio.open_nursery() as nursery:

                async def ask() -> None:
                    got.append(await caller.peers.request("echo", {"hang": True}, timeout=BOUND))

                nursery.start_soon(ask)
                pending = b.router.pending
                # the request is registered before it waits: once every task is blocked
                # (nothing wakes the cluster's wait_until for a new pending entry)
                await trio.testing.wait_all_tasks_blocked()
                assert len(pending) == 1
                (request_id,) = list(pending._entries)
                assert request_id.startswith("req-") and len(request_id) == 16
                forged = Envelope(
                    Kind.REPLY,
                    caller.agent_id,
                    "echo-00000000",  # an id no node has: only the node check can refuse it
                    request_id,
                    time.time(),
                    None,
                    {"forged": True},
                )
                await cluster_of(c).bridge.send_envelope("b", forged)
                # then a genuine notification on the same connection: node b handles its
                # frames in arrival order, so once it is delivered the forged reply was judged
                marker = Envelope(
                    Kind.NOTIFY, caller.agent_id, c.agents[0].agent_id, None, time.time(), None,
                    {"after": "forged"},
                )  # fmt: skip
                await cluster_of(c).bridge.send_envelope("b", marker)
                note = await caller.peers.receive()
                assert note is not None and note.data == {"after": "forged"}
                assert pending.wrong_node_replies == 1
                assert request_id in pending  # still waiting for the node it asked
                assert not got
                nursery.cancel_scope.cancel()


async def test_a_member_cannot_speak_for_another_nodes_agents_nor_nest_deeper(
    start_node: NodeFactory,
) -> None:
    with trio.fail_after(BOUND):
        async with (
            start_node("a", agents=[Echo], **KEYED) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a), **KEYED) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            await wait_discoverable(a, nodes=1, agents=1)
            echo = a.agents[0]
            assert isinstance(echo, Echo)
            caller = b.agents[0]
            bridge = cluster_of(b).bridge
            stats = cluster_of(a).stats

            def notify(sender: str, data: dict[str, object]) -> Envelope:
                return Envelope(Kind.NOTIFY, echo.agent_id, sender, None, time.time(), None, data)

            # the echo agent's own id, claimed from node b: refused
            await bridge.send_envelope("a", notify(echo.agent_id, {"n": 1}))
            # nesting a local send refuses (65 levels), and far more: refused
            await bridge.send_envelope("a", notify(caller.agent_id, nested(65)))
            await bridge.send_envelope("a", notify(caller.agent_id, nested(500)))
            # b's own agent, at the deepest nesting allowed: delivered, and after the others
            await bridge.send_envelope("a", notify(caller.agent_id, nested(64)))
            await echo.noted.wait_value(1)
            (note,) = echo.notes
            assert note.sender == caller.agent_id and note.sender_node == "b"
            assert stats()["inbound_spoofed_sender"] == 1
            assert stats()["inbound_too_deep"] == 2
            reply = await caller.peers.request("echo", {"still": "up"}, timeout=BOUND)
            assert reply is not None and reply["echo"] == {"still": "up"}
