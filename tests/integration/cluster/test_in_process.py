"""Several p2p nodes in one process, over real UDP and ZeroMQ sockets on 127.0.0.1:
discovery, every PeerClient operation across nodes, leaving, keys, warnings, IPv6."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import trio
import zmq
from trio_util import AsyncValue

from jarvis_trio.agent import CustomAgent
from jarvis_trio.errors import PayloadTooLarge
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage
from jarvis_trio.transport import generate_keypair

from .conftest import (
    KEY,
    Caller,
    Echo,
    Manual,
    NodeFactory,
    cluster_of,
    node_config,
    seed_of,
    wait_discoverable,
)


async def test_join_through_a_seed_and_discover_remote_agents(start_node: NodeFactory) -> None:
    with trio.fail_after(10):
        async with (
            start_node("a", agents=[Echo]) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a)) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            await wait_discoverable(a, nodes=1, agents=1)
            caller = b.agents[0]
            echo = a.agents[0]
            found = caller.peers.get_peer(role="echo")
            assert found is not None and found.agent_id == echo.agent_id
            assert found.node_id == "a" and found.location == "remote"
            assert [p.agent_id for p in caller.peers.discover(capability="math")] == [echo.agent_id]
            assert caller.peers.list_roles() == ["echo"]
            (entry,) = caller.peers.list_peers()
            assert entry == {
                "role": "echo",
                "agent_id": echo.agent_id,
                "capabilities": ["echo", "math"],
                "description": "answers every request with its payload",
                "status": "active",
                "location": "remote",
                "node_id": "a",
            }
            assert set(caller.peers.registry) == {echo.agent_id}
            assert echo.peers.get_peer(role="caller") is not None


async def test_every_peer_client_operation_across_nodes(start_node: NodeFactory) -> None:
    with trio.fail_after(15):
        async with (
            start_node("a", agents=[Echo, Echo, Manual]) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a)) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=3)
            peers = b.agents[0].peers
            first, second, manual = a.agents

            reply = await peers.request(
                first.agent_id, {"q": 1}, timeout=5, context={"mission_id": "abc"}
            )
            assert reply == {
                "echo": {"q": 1},
                "context": {"mission_id": "abc"},
                "sender": peers.my_id,
                "sender_node": "b",
            }

            # respond() by return path, context propagated from the request
            answer = await peers.request_message(
                "manual", {"x": 1}, timeout=5, context={"trace": "t-1"}
            )
            assert answer is not None
            assert answer.data == {"handled_by": manual.agent_id}
            assert answer.context == {"trace": "t-1"}
            assert answer.sender == manual.agent_id and answer.sender_node == "a"

            assert await peers.notify(
                first.agent_id, {"event": "ready"}, context={"priority": "high"}
            )
            await first.noted.wait_value(1)
            (note,) = first.notes
            assert note.data == {"event": "ready"} and note.context == {"priority": "high"}
            assert note.sender == peers.my_id and note.sender_node == "b"
            assert note.is_notify and not note.is_request

            # one notification per agent, not per role
            assert await peers.broadcast({"event": "all"}) == 3
            await second.noted.wait_value(1)
            await first.noted.wait_value(2)

            failure = await peers.request(first.agent_id, {"fail": True}, timeout=5)
            assert failure == {
                "status": "failure",
                "error": "asked to fail",
                "error_type": "RuntimeError",
            }

            ids = [
                await peers.ask_async(echo.agent_id, {"n": i})
                for i, echo in enumerate((first, second))
            ]
            assert all(i.startswith("async-") and len(i) == 18 for i in ids)
            replies = [await peers.check_inbox(i, timeout=5) for i in ids]
            assert [r["echo"] for r in replies if r] == [{"n": 0}, {"n": 1}]
            with pytest.raises(ValueError, match="nobody"):
                await peers.ask_async("nobody", {})


async def test_a_late_joiner_sees_everyone_and_everyone_sees_it(
    start_node: NodeFactory,
) -> None:
    with trio.fail_after(15):
        async with (
            start_node("a", agents=[Echo]) as a,
            start_node("b", agents=[Manual], seed_nodes=seed_of(a)) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            async with start_node("c", agents=[Caller], seed_nodes=seed_of(b)) as c:
                await wait_discoverable(c, nodes=2, agents=2)
                await wait_discoverable(a, nodes=2, agents=2)
                await wait_discoverable(b, nodes=2, agents=2)
                peers = c.agents[0].peers
                assert {p["node_id"] for p in peers.list_peers()} == {"a", "b"}
                assert peers.list_roles() == ["echo", "manual"]
                reply = await peers.request("echo", {"late": True}, timeout=5)
                assert reply is not None and reply["sender_node"] == "c"


async def test_agents_added_later_are_fetched_again(start_node: NodeFactory) -> None:
    with trio.fail_after(10):
        async with (
            start_node("a", agents=[Echo]) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a)) as b,
        ):
            await wait_discoverable(b, agents=1)
            added = await a.start_agent(Manual)
            await wait_discoverable(b, agents=2)
            assert b.agents[0].peers.get_peer(role="manual").agent_id == added.agent_id


async def test_a_node_that_stops_leaves_and_fails_requests_waiting_on_it(
    start_node: NodeFactory,
) -> None:
    with trio.fail_after(10):
        async with start_node("b", agents=[Caller]) as b:
            peers = b.agents[0].peers
            outcome: list[object] = []
            async with trio.open_nursery() as nursery:
                # a's hanging handler is cancelled after a short grace period
                a_node = start_node(
                    "a", agents=[Echo], seed_nodes=seed_of(b), stop_grace_period=0.2
                )
                async with a_node as a:
                    await wait_discoverable(b, nodes=1, agents=1)

                    async def hanging_request() -> None:
                        outcome.append(await peers.request("echo", {"hang": True}, timeout=30))

                    nursery.start_soon(hanging_request)
                    await trio.testing.wait_all_tasks_blocked()
                    assert cluster_of(a).node_alive("b")
                # a has left: its agents vanish and the request returns None at once
                await wait_discoverable(b, nodes=0, agents=0)
            assert outcome == [None]
            assert peers.get_peer(role="echo") is None
            assert await peers.request("echo", {}, timeout=5) is None


async def test_with_a_cluster_key_members_talk(start_node: NodeFactory) -> None:
    with trio.fail_after(10):
        async with (
            start_node("a", agents=[Echo], cluster_key=KEY) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a), cluster_key=KEY) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            reply = await b.agents[0].peers.request("echo", {"k": 1}, timeout=5)
            assert reply is not None and reply["sender_node"] == "b"
            assert cluster_of(a).stats()["bridge_zap_admitted"] >= 1
            assert cluster_of(a).bridge.public_key is not None


async def test_a_wrong_cluster_key_can_neither_join_nor_send(start_node: NodeFactory) -> None:
    with trio.fail_after(15):
        async with start_node("a", agents=[Echo], cluster_key=KEY) as a:
            intruder_config = {
                "seed_nodes": seed_of(a),
                "cluster_key": "another-secret-key-1234",
                "join_timeout": 0.3,  # it cannot join: it starts alone after a warning
            }
            async with start_node("x", agents=[Caller], **intruder_config) as x:
                async with start_node(
                    "b", agents=[Caller], seed_nodes=seed_of(a), cluster_key=KEY
                ) as b:
                    # a legitimate node joins in the meantime; the intruder still sees nobody
                    await wait_discoverable(b, nodes=1, agents=1)
                    await wait_discoverable(a, nodes=1, agents=1)
                assert cluster_of(x).live_nodes() == []
                assert "x" not in cluster_of(a).live_nodes()
                assert cluster_of(a).swim.stats().get("drop_auth", 0) >= 1
            # knowing a's data port and public key is not enough either
            a_bridge = cluster_of(a).bridge
            a_key = a_bridge.public_key
            assert a_key is not None
            refused = await trio.to_thread.run_sync(_handshake, a_bridge.port, a_key)
            assert refused == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            assert await trio.to_thread.run_sync(_handshake, a_bridge.port, None) != (
                zmq.EVENT_HANDSHAKE_SUCCEEDED
            )
            stats = cluster_of(a).stats()
            assert stats["bridge_zap_refused"] >= 1
            assert stats["inbound_malformed"] == 0 and stats["bridge_dropped_undecodable"] == 0
            assert a.agents[0].notes == []


def _handshake(port: int, server_key: bytes | None) -> int:
    """Connect a raw ZeroMQ client -- with a fresh keypair that is no member's when
    ``server_key`` is given, with no keys at all otherwise -- send a forged frame, and return
    the first handshake event it sees."""
    from zmq.utils.monitor import recv_monitor_message

    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        if server_key is not None:
            own = generate_keypair()
            dealer.setsockopt(zmq.CURVE_SERVERKEY, server_key)
            dealer.setsockopt(zmq.CURVE_PUBLICKEY, own.public)
            dealer.setsockopt(zmq.CURVE_SECRETKEY, own.secret)
        monitor = dealer.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        )
        monitor.setsockopt(zmq.RCVTIMEO, 5000)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b'\x01[1,"echo","forger",null,0.0,null,{}]')
        event = int(recv_monitor_message(monitor)["event"])
        dealer.disable_monitor()
        monitor.close()
        dealer.close()
        return event
    finally:
        ctx.term()


async def test_bound_to_all_interfaces_without_a_key_warns_and_advertises_a_real_address(
    start_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="jarvis_trio.cluster"):
        async with start_node("a", agents=[Echo], bind_host="0.0.0.0") as a:
            advertised = cluster_of(a).swim.local_member.meta.host
            assert advertised != "0.0.0.0"
            async with start_node(
                "b", agents=[Caller], seed_nodes=f"127.0.0.1:{cluster_of(a).swim.address[1]}"
            ) as b:
                await wait_discoverable(b, nodes=1, agents=1)
    assert any("without a cluster key" in r.getMessage() for r in caplog.records)


async def test_loopback_without_a_key_does_not_warn(
    start_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="jarvis_trio.cluster"):
        async with start_node("a"):
            pass
    assert not any("without a cluster key" in r.getMessage() for r in caplog.records)


async def test_ipv6_seed_literal(start_node: NodeFactory) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback (::1)")
    with trio.fail_after(10):
        async with start_node("a", agents=[Echo], bind_host="::1") as a:
            seed = seed_of(a)
            assert seed.startswith("[::1]:")
            async with start_node("b", agents=[Caller], bind_host="::1", seed_nodes=seed) as b:
                await wait_discoverable(b, nodes=1, agents=1)
                reply = await b.agents[0].peers.request("echo", {"v6": True}, timeout=5)
                assert reply is not None and reply["echo"] == {"v6": True}


async def test_leave_drops_the_node_at_once_while_it_still_runs(start_node: NodeFactory) -> None:
    with trio.fail_after(10):
        async with (
            start_node("a", agents=[Echo]) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a)) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            await cluster_of(a).leave()
            await cluster_of(a).leave()  # idempotent
            await wait_discoverable(b, nodes=0, agents=0)
            assert await b.agents[0].peers.request("echo", {}, timeout=5) is None
            assert cluster_of(a).live_nodes() == []
            assert a.agents[0].peers.get_peer(role="caller") is None


class Gated(CustomAgent):
    """Records notifications, but only once its gate opens: its inbox fills meanwhile."""

    role = "gated"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.gate = trio.Event()
        self.seen: list[int] = []
        self.count = AsyncValue(0)

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        await self.gate.wait()
        self.seen.append(message.data["i"])
        self.count.value += 1


async def test_a_slow_agent_slows_its_remote_senders_down_instead_of_losing_messages(
    start_node: NodeFactory,
) -> None:
    """With an inbox of 4 and the agent stalled, 200 notifications from another node all
    arrive, in order: the inbound pump waits for the agent instead of dropping."""
    with trio.fail_after(15):
        async with (
            start_node("a", agents=[Gated], inbox_size=4) as a,
            start_node("b", agents=[Caller], seed_nodes=seed_of(a)) as b,
        ):
            await wait_discoverable(b, nodes=1, agents=1)
            gated = a.agents[0]
            assert isinstance(gated, Gated)
            peers = b.agents[0].peers
            for i in range(200):
                assert await peers.notify("gated", {"i": i})
            gated.gate.set()
            await gated.count.wait_value(200)
            assert gated.seen == list(range(200))
            stats = cluster_of(a).stats()
            assert stats["inbound_dropped_full"] == 0 and a.stats.inbound_dropped == 0


class Busy(CustomAgent):
    """Holds every request until cancelled, and records that it was."""

    role = "busy"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.handler_cancelled = False
        self.handling = trio.Event()

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        self.handling.set()
        try:
            await trio.sleep_forever()
        finally:
            self.handler_cancelled = True


async def test_stop_leaves_the_cluster_before_waiting_for_busy_handlers(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    with trio.fail_after(20):
        async with start_node("b", agents=[Caller]) as b:
            peers = b.agents[0].peers
            a = Mesh(
                node_config(tmp_path, "a", seed_nodes=seed_of(b), stop_grace_period=5),
                env_file=None,
                environ={},
            )
            busy = a.add(Busy)
            assert isinstance(busy, Busy)
            await a.start()
            await wait_discoverable(b, nodes=1, agents=1)
            outcome: list[object] = []
            async with trio.open_nursery() as nursery:

                async def held_request() -> None:
                    outcome.append(await peers.request("busy", {}, timeout=30))

                nursery.start_soon(held_request)
                # the request crosses the I/O threads, which wait_all_tasks_blocked does not see
                await busy.handling.wait()
                nursery.start_soon(a.stop)  # the busy handler holds a's stop for its 5 s grace
                await wait_discoverable(b, nodes=0, agents=0)
                # b saw a leave while a's handler was still inside its grace period
                assert not busy.handler_cancelled
            assert outcome == [None]
            assert busy.handler_cancelled
            assert a.state == "stopped"


async def test_a_payload_at_the_size_limit_crosses_nodes_and_one_byte_more_is_refused(
    start_node: NodeFactory,
) -> None:
    limit = 4096
    at_limit = {"blob": "x" * (limit - len('{"blob":""}'))}
    with trio.fail_after(10):
        async with (
            start_node("b", agents=[Echo], max_message_size=limit) as b,
            start_node("a", agents=[Caller], seed_nodes=seed_of(b), max_message_size=limit) as a,
        ):
            await wait_discoverable(a, nodes=1, agents=1)
            peers = a.agents[0].peers
            assert await peers.notify("echo", at_limit) is True
            echo = b.agents[0]
            assert isinstance(echo, Echo)
            await echo.noted.wait_value(1)
            assert echo.notes[0].data == at_limit
            with pytest.raises(PayloadTooLarge):
                await peers.notify("echo", {"blob": at_limit["blob"] + "x"})
