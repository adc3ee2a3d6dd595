"""Conformance of PeerClient with DESIGN §2, one or more tests per row of the table."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
import trio.testing

from jarvis_trio.agent import CustomAgent
from jarvis_trio.errors import PayloadError, PayloadTooLarge
from jarvis_trio.peers.directory import PeerInfo
from jarvis_trio.peers.messages import IncomingMessage

from .conftest import Echo, Idle, MeshFactory


class Analyst(CustomAgent):
    role = "analyst"
    capabilities = ["data-analysis", "processing"]
    description = "analyses"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        return {"by": self.agent_id}


class Scout(CustomAgent):
    role = "scout"
    capabilities = ["reconnaissance", "processing"]


# -- discovery ----------------------------------------------------------------------------


async def test_get_peer_first_of_role_never_the_caller(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a1 = await mesh.start_agent(Analyst)
        a2 = await mesh.start_agent(Analyst)
        found = a1.peers.get_peer(role="analyst")
        assert found is not None and found.agent_id == a2.agent_id
        assert a2.peers.get_peer(role="analyst").agent_id == a1.agent_id  # type: ignore[union-attr]
        assert a1.peers.get_peer(role="nobody") is None
        solo = await mesh.start_agent(Scout)
        assert solo.peers.get_peer(role="scout") is None


async def test_discover_filters_and_excludes_the_caller(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a1 = await mesh.start_agent(Analyst)
        a2 = await mesh.start_agent(Analyst)
        s1 = await mesh.start_agent(Scout)
        peers = a1.peers
        assert [p.agent_id for p in peers.discover(role="analyst")] == [a2.agent_id]
        assert [p.agent_id for p in peers.discover(capability="processing")] == [
            a2.agent_id,
            s1.agent_id,
        ]
        assert [p.agent_id for p in peers.discover(role="scout", capability="processing")] == [
            s1.agent_id
        ]
        assert peers.discover(role="scout", capability="data-analysis") == []
        with pytest.raises(ValueError, match="unknown strategy"):
            peers.discover(role="analyst", strategy="nearest")


async def test_discover_round_robin_rotates(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        ids = [(await mesh.start_agent(Analyst)).agent_id for _ in range(3)]
        firsts = [
            caller.peers.discover(role="analyst", strategy="round_robin")[0].agent_id
            for _ in range(6)
        ]
        assert firsts == ids + ids


async def test_discover_random_uses_the_node_rng(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        ids = [(await mesh.start_agent(Analyst)).agent_id for _ in range(6)]
        orders = {
            tuple(p.agent_id for p in caller.peers.discover(role="analyst", strategy="random"))
            for _ in range(20)
        }
        assert all(sorted(order) == sorted(ids) for order in orders)
        assert len(orders) > 1


async def test_discover_one(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        assert caller.peers.discover_one(role="analyst") is None
        a = await mesh.start_agent(Analyst)
        found = caller.peers.discover_one(capability="processing", strategy="least_recent")
        assert found is not None and found.agent_id == a.agent_id


async def test_list_roles_sorted_without_own_role(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Analyst)
        await mesh.start_agent(Analyst)
        await mesh.start_agent(Scout)
        await mesh.start_agent(Echo)
        assert a.peers.list_roles() == ["echo", "scout"]


async def test_list_peers_dicts(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Analyst)
        s = await mesh.start_agent(Scout)
        assert a.peers.list_peers() == [
            {
                "role": "scout",
                "agent_id": s.agent_id,
                "capabilities": ["reconnaissance", "processing"],
                "description": "",
                "status": "active",
                "location": "local",
                "node_id": "test-node",
            }
        ]


async def test_registry_read_only_without_the_caller(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Analyst)
        s = await mesh.start_agent(Scout)
        registry = a.peers.registry
        assert list(registry) == [s.agent_id]
        assert isinstance(registry[s.agent_id], PeerInfo)
        assert registry[s.agent_id].role == "scout"
        with pytest.raises(TypeError):
            registry["x"] = registry[s.agent_id]  # type: ignore[index]
        late = await mesh.start_agent(Echo)
        assert late.agent_id in a.peers.registry


async def test_identity(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a = mesh.add(Analyst, agent_id="analyst-main")
        await trio.testing.wait_all_tasks_blocked()
        assert a.peers.my_id == "analyst-main"
        assert a.peers.my_role == "analyst"
        assert a.peers.node_id == "test-node"


# -- notify -------------------------------------------------------------------------------


async def test_notify_by_role_and_by_id(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        sender = await mesh.start_agent(Idle)
        receiver = await mesh.start_agent(Idle)
        assert await sender.peers.notify(receiver.agent_id, {"n": 1}, context={"m": "x"})
        assert await sender.peers.notify("nobody", {"n": 2}) is False
        message = await receiver.peers.receive(timeout=0)
        assert message is not None
        assert (message.sender, message.sender_node, message.type) == (
            sender.agent_id,
            "test-node",
            "notify",
        )
        assert message.is_notify and not message.is_request
        assert message.data == {"n": 1} and message.context == {"m": "x"}
        assert message.correlation_id is None
        assert message.timestamp > 0
        assert await receiver.peers.receive(timeout=0) is None


async def test_a_role_never_resolves_to_the_caller(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        only = await mesh.start_agent(Idle)
        assert await only.peers.notify("caller", {"x": 1}) is False
        assert await only.peers.request("caller", {"x": 1}, timeout=1) is None
        with pytest.raises(ValueError):
            await only.peers.ask_async("caller", {"x": 1})
        assert await only.peers.notify(only.agent_id, {"x": 1}) is True  # explicit id: allowed
        assert await only.peers.receive(timeout=0) is not None


async def test_payload_is_copied_on_local_delivery(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        sender = await mesh.start_agent(Idle)
        receiver = await mesh.start_agent(Idle)
        payload: dict[str, Any] = {"items": [1, 2]}
        await sender.peers.notify(receiver.agent_id, payload)
        payload["items"].append(3)
        message = await receiver.peers.receive(timeout=0)
        assert message is not None and message.data == {"items": [1, 2]}


# -- request / respond --------------------------------------------------------------------


async def test_request_returns_the_reply_dict(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        echo = await mesh.start_agent(Echo)
        reply = await caller.peers.request("echo", {"q": 1})
        assert reply == {"echo": {"q": 1}, "from": caller.agent_id}
        reply = await caller.peers.request(echo.agent_id, {"q": 2}, timeout=5)
        assert reply == {"echo": {"q": 2}, "from": caller.agent_id}


async def test_request_none_on_unresolved_target_or_timeout(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        assert await caller.peers.request("ghost", {"q": 1}) is None
        start = trio.current_time()
        assert await caller.peers.request(silent.agent_id, {"q": 1}, timeout=2.5) is None
        assert 2.5 <= trio.current_time() - start < 2.6
        with pytest.raises(ValueError, match="timeout"):
            await caller.peers.request(silent.agent_id, {"q": 1}, timeout=-1)


async def test_request_ids_and_respond_by_return_path(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        server = await mesh.start_agent(Idle)
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def ask() -> None:
                results.append(await caller.peers.request(server.agent_id, {"q": 1}))

            nursery.start_soon(ask)
            message = await server.peers.receive()
            assert message is not None and message.is_request
            assert re.fullmatch(r"req-[0-9a-f]{12}", message.correlation_id or "")
            # the return path is the message, not the registry: remove the caller's entry
            mesh.directory.remove_local(caller.agent_id)
            assert await server.peers.respond(message, {"a": 2})
        assert results == [{"a": 2}]


async def test_respond_needs_a_request(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Idle)
        b = await mesh.start_agent(Idle)
        await a.peers.notify(b.agent_id, {"x": 1})
        message = await b.peers.receive(timeout=0)
        assert message is not None
        with pytest.raises(ValueError, match="request"):
            await b.peers.respond(message, {"y": 1})


async def test_respond_propagates_context_unless_overridden(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        server = await mesh.start_agent(Idle)
        replies: list[IncomingMessage | None] = []
        async with trio.open_nursery() as nursery:

            async def ask(n: int) -> None:
                replies.append(
                    await caller.peers.request_message(
                        server.agent_id, {"n": n}, context={"mission_id": "abc123"}
                    )
                )

            nursery.start_soon(ask, 1)
            first = await server.peers.receive()
            assert first is not None
            await server.peers.respond(first, {"ok": 1})
            nursery.start_soon(ask, 2)
            second = await server.peers.receive()
            assert second is not None
            await server.peers.respond(second, {"ok": 2}, context={"mission_id": "other"})
        assert replies[0] is not None and replies[0].context == {"mission_id": "abc123"}
        assert replies[0].sender == server.agent_id and replies[0].is_response
        assert replies[1] is not None and replies[1].context == {"mission_id": "other"}


async def test_the_default_loop_replies_with_a_copy_and_the_requests_context(
    make_mesh: MeshFactory,
) -> None:
    """A same-node request answered by the default loop (its own fast path): the requester
    gets containers of its own, and the request's context comes back as a copy."""

    class Keeper(CustomAgent):
        role = "keeper"

        async def setup(self) -> None:
            self.replies: list[dict[str, Any]] = []
            self.requests: list[IncomingMessage] = []

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            self.requests.append(message)
            reply: dict[str, Any] = {"items": [message.data["n"]]}
            self.replies.append(reply)
            return reply

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        keeper = await mesh.start_agent(Keeper)
        assert isinstance(keeper, Keeper)
        reply = await caller.peers.request("keeper", {"n": 1}, context={"tags": ["a"]})
        assert reply == {"items": [1]}
        reply["items"].append(2)
        keeper.replies[0]["items"].append(3)
        assert reply == {"items": [1, 2]} and keeper.replies[0] == {"items": [1, 3]}
        whole = await caller.peers.request_message("keeper", {"n": 2}, context={"tags": ["b"]})
        assert whole is not None and whole.is_response and whole.sender == keeper.agent_id
        assert whole.data == {"items": [2]} and whole.context == {"tags": ["b"]}
        assert whole.context["tags"] is not keeper.requests[1].context["tags"]


async def test_per_role_counts_of_the_in_process_request_path(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        silent = await mesh.start_agent(Idle)
        for n in range(3):
            assert await caller.peers.request("echo", {"n": n}) is not None
        assert await caller.peers.request(silent.agent_id, {"n": 0}, timeout=1) is None
        echo, idle = mesh.router.traffic.role("echo"), mesh.router.traffic.role("caller")
        assert (echo.sent, echo.answered, echo.failed, echo.timed_out) == (3, 3, 0, 0)
        assert (idle.sent, idle.answered, idle.failed, idle.timed_out) == (1, 0, 0, 1)
        mesh.router.traffic.enabled = False
        assert await caller.peers.request("echo", {"n": 9}) is not None
        assert echo.sent == 3  # switched off: nothing counted, the request still answered


async def test_a_raising_handler_sends_an_error_reply_and_keeps_serving(
    make_mesh: MeshFactory,
) -> None:
    class Fragile(CustomAgent):
        role = "fragile"

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            if message.data.get("boom"):
                raise KeyError("missing thing")
            return {"fine": True}

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Fragile)
        with trio.fail_after(10):
            reply = await caller.peers.request("fragile", {"boom": True})
        assert reply == {"status": "failure", "error": "'missing thing'", "error_type": "KeyError"}
        assert await caller.peers.request("fragile", {}) == {"fine": True}


async def test_a_handler_returning_a_bad_reply_gets_an_error_reply(make_mesh: MeshFactory) -> None:
    class Sloppy(CustomAgent):
        role = "sloppy"

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            return {"when": object()}

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Sloppy)
        reply = await caller.peers.request("sloppy", {})
        assert reply is not None and reply["error_type"] == "PayloadError"
        assert "$.when" in reply["error"]


# -- payload refusal on every sending call ------------------------------------------------


async def test_every_sending_call_refuses_bad_payloads_at_the_call_site(
    make_mesh: MeshFactory,
) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Idle)
        b = await mesh.start_agent(Idle)
        bad = {"at": {1, 2}}
        for call in (
            a.peers.notify(b.agent_id, bad),
            a.peers.request(b.agent_id, bad),
            a.peers.ask_async(b.agent_id, bad),
            a.peers.broadcast(bad),
            a.peers.notify(b.agent_id, {"ok": 1}, context=bad),
            a.peers.notify("ghost", bad),  # refused before resolution too
        ):
            with pytest.raises(PayloadError, match=r"\$\.at"):
                await call
        await a.peers.notify(b.agent_id, {"ok": 1})
        request_message = await b.peers.receive(timeout=0)
        assert request_message is not None
        assert await b.peers.receive(timeout=0) is None  # nothing refused was delivered


async def test_oversized_payloads_are_refused_locally_too(make_mesh: MeshFactory) -> None:
    async with make_mesh(max_message_size=1000) as mesh:
        a = await mesh.start_agent(Idle)
        b = await mesh.start_agent(Idle)
        with pytest.raises(PayloadTooLarge):
            await a.peers.notify(b.agent_id, {"blob": "x" * 2000})
        assert await a.peers.notify(b.agent_id, {"blob": "x" * 100})


# -- broadcast ----------------------------------------------------------------------------


async def test_broadcast_one_per_agent_including_same_role_peers(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        twins = [await mesh.start_agent(Idle) for _ in range(2)]
        others = [await mesh.start_agent(Idle) for _ in range(2)]
        sender = twins[0]
        count = await sender.peers.broadcast({"event": "status"}, context={"m": 1})
        assert count == 3
        for agent in [twins[1], *others]:
            message = await agent.peers.receive(timeout=0)
            assert message is not None and message.data == {"event": "status"}
            assert message.context == {"m": 1}
            assert await agent.peers.receive(timeout=0) is None
        assert await sender.peers.receive(timeout=0) is None
        first = await twins[1].peers.broadcast({"event": "x"})
        assert first == 3


async def test_broadcast_receivers_get_independent_copies(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        sender = await mesh.start_agent(Idle)
        r1 = await mesh.start_agent(Idle)
        r2 = await mesh.start_agent(Idle)
        await sender.peers.broadcast({"items": [1]})
        m1 = await r1.peers.receive(timeout=0)
        m2 = await r2.peers.receive(timeout=0)
        assert m1 is not None and m2 is not None
        m1.data["items"].append(2)
        assert m2.data == {"items": [1]}


# -- receive ------------------------------------------------------------------------------


async def test_receive_timeout_zero_is_non_blocking_and_sees_queued_messages(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Idle)
        b = await mesh.start_agent(Idle)
        start = trio.current_time()
        assert await b.peers.receive(timeout=0) is None
        await a.peers.notify(b.agent_id, {"x": 1})
        message = await b.peers.receive(timeout=0)
        assert message is not None and message.data == {"x": 1}
        assert await b.peers.receive(timeout=3) is None
        assert trio.current_time() - start == pytest.approx(3)


async def test_receive_none_waits(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        a = await mesh.start_agent(Idle)
        b = await mesh.start_agent(Idle)
        got: list[IncomingMessage | None] = []
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                got.append(await b.peers.receive())

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await a.peers.notify(b.agent_id, {"x": 1})
        assert got[0] is not None and got[0].data == {"x": 1}


# -- ask_async / check_inbox --------------------------------------------------------------


async def test_ask_async_and_check_inbox(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        request_id = await caller.peers.ask_async("echo", {"q": 1})
        assert re.fullmatch(r"async-[0-9a-f]{12}", request_id)
        reply = await caller.peers.check_inbox(request_id, timeout=10)
        assert reply == {"echo": {"q": 1}, "from": caller.agent_id}
        assert await caller.peers.check_inbox(request_id) is None  # removed after reading
        with pytest.raises(ValueError, match="ghost"):
            await caller.peers.ask_async("ghost", {"q": 1})


async def test_check_inbox_tells_expired_from_pending(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        silent = await mesh.start_agent(Idle)
        request_id = await caller.peers.ask_async(silent.agent_id, {"q": 1}, timeout=5)
        assert caller.peers.inbox_status(request_id) == "pending"
        start = trio.current_time()
        assert await caller.peers.check_inbox(request_id, timeout=60) is None
        assert trio.current_time() - start < 5.1  # ended by expiry, not by the 60 s wait
        assert caller.peers.inbox_status(request_id) == "expired"
        start = trio.current_time()
        assert await caller.peers.check_inbox(request_id, timeout=60) is None
        assert trio.current_time() == start
        # the late answer to the expired request is dropped and counted
        message = await silent.peers.receive(timeout=0)
        assert message is not None
        assert await silent.peers.respond(message, {"late": True}) is False
        assert mesh.late_replies == 1
        assert await caller.peers.receive(timeout=0) is None


async def test_check_inbox_remove_false_keeps_the_reply(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Echo)
        request_id = await caller.peers.ask_async("echo", {"q": 1})
        first = await caller.peers.check_inbox(request_id, timeout=5, remove=False)
        assert first is not None
        assert caller.peers.inbox_status(request_id) == "ready"
        assert await caller.peers.check_inbox(request_id) == first


# -- record_peer_usage --------------------------------------------------------------------


async def test_record_peer_usage_feeds_least_recent(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        ids = [(await mesh.start_agent(Analyst)).agent_id for _ in range(3)]
        peers = caller.peers
        assert [p.agent_id for p in peers.discover(role="analyst", strategy="least_recent")] == ids
        peers.record_peer_usage(ids[0])
        peers.record_peer_usage(ids[2])
        assert [p.agent_id for p in peers.discover(role="analyst", strategy="least_recent")] == [
            ids[1],
            ids[0],
            ids[2],
        ]


async def test_resolution_follows_directory_changes(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        first = await mesh.start_agent(Analyst)
        assert await caller.peers.request("analyst", {}) == {"by": first.agent_id}
        mesh.directory.remove_local(first.agent_id)
        assert await caller.peers.request("analyst", {}, timeout=1) is None
        second = await mesh.start_agent(Analyst)
        assert await caller.peers.request("analyst", {}) == {"by": second.agent_id}
        with pytest.raises(TypeError, match="target must be"):
            await caller.peers.notify(42, {})  # type: ignore[arg-type]
