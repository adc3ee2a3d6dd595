"""Bounded inboxes: what a full inbox means for each sending call.

* ``notify``: the sender waits for space up to the node's ``notify_timeout``, then ``False``.
* ``request``: the sender waits for space within the request's own timeout, then ``None``.
* ``ask_async``: returns its id at once; the node's nursery delivers when space frees up, or
  ends the entry with ``None`` at its deadline.
* ``broadcast``: full inboxes are waited on concurrently, each within ``notify_timeout``.
* from another node (``deliver_inbound``): never waits; dropped and counted.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from jarvis_trio.peers.messages import NOTIFY, IncomingMessage

from .conftest import Echo, Idle, MeshFactory, full_inbox


async def test_notify_waits_for_space_then_gives_up(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh(inbox_size=2, notify_timeout=1.5) as mesh:
        sender = await mesh.start_agent(Idle)
        receiver = await mesh.start_agent(Idle)
        assert await sender.peers.notify(receiver.agent_id, {"n": 1})
        assert await sender.peers.notify(receiver.agent_id, {"n": 2})
        start = trio.current_time()
        assert await sender.peers.notify(receiver.agent_id, {"n": 3}) is False
        assert trio.current_time() - start == pytest.approx(1.5)
        assert mesh.stats.notify_failed == 1
        assert mesh.stats.backpressure_waits == 1

        async def drain_later() -> None:
            await trio.sleep(0.5)
            await receiver.peers.receive()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_later)
            start = trio.current_time()
            assert await sender.peers.notify(receiver.agent_id, {"n": 4})
            assert trio.current_time() - start == pytest.approx(0.5)
        got = [await receiver.peers.receive(timeout=0) for _ in range(3)]
        assert [m.data["n"] if m else None for m in got] == [2, 4, None]


async def test_request_waits_within_its_timeout_then_none(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with full_inbox(make_mesh) as (mesh, sender, receiver):
        start = trio.current_time()
        assert await sender.peers.request(receiver.agent_id, {"q": 1}, timeout=4) is None
        assert trio.current_time() - start == pytest.approx(4)
        assert mesh.stats.request_failed == 1
        assert len(mesh.router.pending) == 0


async def test_request_gets_in_when_space_frees_and_is_answered(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with full_inbox(make_mesh) as (_, sender, server):
        replies: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                replies.append(await sender.peers.request(server.agent_id, {"q": 1}, timeout=10))

            nursery.start_soon(ask)
            await trio.sleep(2)  # virtual time: the request waits for room meanwhile
            assert (await server.peers.receive()).is_notify  # type: ignore[union-attr]
            request = await server.peers.receive()
            assert request is not None and request.is_request
            await server.peers.respond(request, {"a": 1})
        assert replies == [{"a": 1}]


async def test_ask_async_into_a_full_inbox_is_delivered_by_the_node(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with full_inbox(make_mesh) as (_, sender, server):
        start = trio.current_time()
        first = await sender.peers.ask_async(server.agent_id, {"q": 1}, timeout=30)
        assert trio.current_time() == start  # returned at once
        await trio.sleep(0.5)  # virtual time: the two requests queue at different moments
        doomed = await sender.peers.ask_async(server.agent_id, {"q": 2}, timeout=3)
        await trio.sleep(0.5)
        await server.peers.receive()  # frees one slot: the first request gets in
        request = await server.peers.receive()
        assert request is not None and request.data == {"q": 1}
        await server.peers.respond(request, {"a": 1})
        assert await sender.peers.check_inbox(first) == {"a": 1}
        # the second one could never get in: by its deadline it ends with None
        assert await sender.peers.check_inbox(doomed, timeout=10) is None
        assert sender.peers.inbox_status(doomed) in ("expired", "unknown")


async def test_broadcast_waits_for_full_inboxes_concurrently(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh(inbox_size=1, notify_timeout=2) as mesh:
        sender = await mesh.start_agent(Idle)
        receivers = [await mesh.start_agent(Idle) for _ in range(4)]
        for receiver in receivers[:2]:
            assert await sender.peers.notify(receiver.agent_id, {"fill": True})
        start = trio.current_time()
        assert await sender.peers.broadcast({"event": "x"}) == 2
        assert trio.current_time() - start == pytest.approx(2)  # concurrent waits


async def test_inbound_from_another_node_never_waits(make_mesh: MeshFactory) -> None:
    async with make_mesh(inbox_size=1) as mesh:
        receiver = await mesh.start_agent(Idle)

        def inbound(n: int, target: str) -> IncomingMessage:
            return IncomingMessage("far-1", "node-b", NOTIFY, {"n": n}, None, 0.0, {}, target)

        assert mesh.router.deliver_inbound(inbound(1, receiver.agent_id))
        assert not mesh.router.deliver_inbound(inbound(2, receiver.agent_id))
        assert not mesh.router.deliver_inbound(inbound(3, "nobody-here"))
        assert mesh.stats.inbound_dropped == 2
        message = await receiver.peers.receive(timeout=0)
        assert message is not None and message.sender_node == "node-b"


async def test_inbound_waiting_applies_bounded_backpressure(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh(inbox_size=1) as mesh:
        receiver = await mesh.start_agent(Idle)

        def inbound(n: int) -> IncomingMessage:
            return IncomingMessage(
                "far-1", "node-b", NOTIFY, {"n": n}, None, 0.0, {}, receiver.agent_id
            )

        assert await mesh.router.deliver_inbound_waiting(inbound(1), timeout=1)
        start = trio.current_time()
        assert not await mesh.router.deliver_inbound_waiting(inbound(2), timeout=1)
        assert trio.current_time() - start == pytest.approx(1)
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                await trio.sleep(0.5)
                await receiver.peers.receive()

            nursery.start_soon(drain)
            assert await mesh.router.deliver_inbound_waiting(inbound(3), timeout=1)
        assert mesh.stats.inbound_dropped == 1
        sender = receiver._inbox.tx  # the memory-channel-shaped face
        with pytest.raises(trio.WouldBlock):
            sender.send_nowait(inbound(4))


async def test_the_pending_table_bound_is_an_outcome(make_mesh: MeshFactory) -> None:
    async with make_mesh(max_pending=2) as mesh:
        sender = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        await sender.peers.ask_async(silent.agent_id, {"q": 1})
        await sender.peers.ask_async(silent.agent_id, {"q": 2})
        with pytest.raises(ValueError, match="already pending"):
            await sender.peers.ask_async(silent.agent_id, {"q": 3})
        assert await sender.peers.request("echo", {"q": 4}) is None
        assert mesh.stats.request_failed == 1
