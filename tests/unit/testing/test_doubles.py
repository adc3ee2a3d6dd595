"""The agent test doubles: the real objects' signatures, scripted replies, recorded traffic,
and a harness that catches a handler which forgets to reply."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import trio
from seed_snippets import ScoutAgent as SeedScoutAgent

from jarvis_trio import BlobStorage, CustomAgent, IncomingMessage, Mesh, PeerClient
from jarvis_trio.errors import BlobNotFound, PayloadError
from jarvis_trio.mailbox.contracts import Mailbox, MailboxMessage
from jarvis_trio.peers.client import ClientCore
from jarvis_trio.testing import (
    MockBlobStorage,
    MockMailbox,
    MockMesh,
    MockPeerClient,
    NoReplyError,
    agent_under_test,
)


def public(cls: type) -> list[str]:
    return sorted(n for n in dir(cls) if not n.startswith("_") and n not in ("agent_id",))


def same_signature(double: type, real: type, name: str) -> None:
    mine, theirs = inspect.getattr_static(double, name), inspect.getattr_static(real, name)
    if isinstance(theirs, property):
        assert isinstance(mine, property), f"{double.__name__}.{name} must be a property"
        return
    assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(
        inspect.unwrap(theirs)
    ), f"{double.__name__}.{name}: async on one side only"
    a, b = inspect.signature(getattr(double, name)), inspect.signature(getattr(real, name))
    assert a == b, f"{double.__name__}.{name}{a} differs from {real.__name__}.{name}{b}"


@pytest.mark.parametrize(
    ("double", "real", "names"),
    [
        (MockPeerClient, PeerClient, public(PeerClient)),
        (MockBlobStorage, BlobStorage, [n for n in public(BlobStorage) if n != "root"]),
        (MockMailbox, Mailbox, public(Mailbox)),
        (MockMesh, Mesh, ["add", "agents", "get_agent", "get_diagnostics", "start", "stop"]),
    ],
)
def test_doubles_have_the_real_signatures(double: type, real: type, names: list[str]) -> None:
    assert names, real
    for name in names:
        assert hasattr(double, name), f"{double.__name__} lacks {name}"
        same_signature(double, real, name)


def test_the_peer_client_double_inherits_the_public_calls() -> None:
    """The peer client's public calls are written once, in the base both clients derive from:
    an override in either (with another signature, or without ``@trio_side``) fails here."""
    shared = public(ClientCore)
    assert {"request", "request_message", "notify", "ask_async", "broadcast"} <= set(shared)
    for cls in (PeerClient, MockPeerClient):
        for name in shared:
            found = inspect.getattr_static(cls, name)
            assert found is ClientCore.__dict__[name], f"{cls.__name__} overrides {name}"


# -- the seed's ScoutAgent, unit-tested ------------------------------------------------------


class ScoutAgent(SeedScoutAgent):
    """The seed's ScoutAgent (``examples/scout.py``) with the two helpers it calls that the
    documentation does not show."""

    async def gather_data(self, task: str) -> dict[str, Any]:
        return {"sector": task, "readings": [3, 1, 4]}

    async def re_gather(self, task: str, feedback: str) -> dict[str, Any]:
        return {"sector": task, "readings": [3, 1, 4], "fixed": feedback}


async def test_scout_notifies_the_analyst_and_re_gathers_on_a_failed_validation() -> None:
    async with agent_under_test(ScoutAgent) as scout:
        scout.peers.add_peer("analyst")
        other = scout.peers.add_peer("scout", "scout-other")
        scout.peers.set_response(
            "scout-other", lambda message, context: {"valid": False, "feedback": "no units"}
        )
        result = await scout.run_task("sector-7", {"mission_id": "m1"})
    assert result == {
        "status": "complete",
        "data": {"sector": "sector-7", "readings": [3, 1, 4], "fixed": "no units"},
    }
    scout.peers.assert_notified("analyst", {"event": "data_ready"}, context={"mission_id": "m1"})
    sent = scout.peers.assert_requested(other.agent_id, {"action": "validate"})
    assert sent.reply == {"valid": False, "feedback": "no units"}
    with pytest.raises(AssertionError, match="no notify to 'billing'"):
        scout.peers.assert_notified("billing")


async def test_scout_alone_skips_validation() -> None:
    async with agent_under_test(ScoutAgent) as scout:
        result = await scout.run_task("sector-1")
    assert result["data"] == {"sector": "sector-1", "readings": [3, 1, 4]}
    assert [m.kind for m in scout.peers.sent] == ["notify"]
    assert scout.peers.notifications[0].target == "analyst"  # recorded, though nobody listens


# -- replies ---------------------------------------------------------------------------------


class Forgetful(CustomAgent):
    role = "forgetful"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any] | None:
        self.last = message.data  # ...and forgets to return a reply
        return None


class Careful(CustomAgent):
    role = "careful"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any] | None:
        if message.data.get("manual"):
            await self.peers.respond(message, {"answered": "by respond()"})
            return None
        if message.data.get("explode"):
            raise RuntimeError("boom")
        return {"echo": message.data}


async def test_a_handler_that_forgets_to_reply_is_caught() -> None:
    async with agent_under_test(Forgetful) as agent:
        with pytest.raises(NoReplyError, match="returned None and did not call respond"):
            await agent.request({"q": 1})
    async with agent_under_test(Careful) as agent:
        assert await agent.request({"q": 1}) == {"echo": {"q": 1}}
        assert await agent.request({"manual": True}) == {"answered": "by respond()"}
        failed = await agent.request({"explode": True})  # the mesh's error reply
        assert failed == {"status": "failure", "error": "boom", "error_type": "RuntimeError"}


async def test_an_error_leaves_the_harness_block_as_raised() -> None:
    # docs/testing-agents.md lets the NoReplyError fail the test from inside the block: it
    # must leave the block as itself (as from `async with Mesh`), not in an ExceptionGroup
    with pytest.raises(NoReplyError, match="returned None and did not call respond"):
        async with agent_under_test(Forgetful) as agent:
            await agent.request({"q": 1})
    with pytest.raises(AssertionError, match="as the test wrote it"):
        async with agent_under_test(ManualLoop):  # its own loop runs in the block
            raise AssertionError("as the test wrote it")


class ManualLoop(CustomAgent):
    """The seed's receive()/respond() pattern, in a loop of its own."""

    role = "manual"

    async def run(self) -> None:
        while True:
            message = await self.peers.receive()
            if message and message.is_request and message.data.get("answer"):
                await self.peers.respond(message, {"status": "acknowledged"})


async def test_an_own_loop_that_forgets_to_respond_is_caught(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with agent_under_test(ManualLoop) as agent:
        assert await agent.request({"answer": True}) == {"status": "acknowledged"}
        with pytest.raises(NoReplyError, match="did not respond"):
            await agent.request({"answer": False}, timeout=2.0)
        assert [r.message for r in agent.peers.responses] == [{"status": "acknowledged"}]


# -- the other doubles -----------------------------------------------------------------------


class Escalation(CustomAgent):
    role = "escalation"

    async def setup(self) -> None:
        self.count = 0

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        self.count += 1
        saved = await self._blob_storage.save(
            f"escalations/{message.payload['customer_id']}.txt", f"ESCALATION #{self.count}"
        )
        self.mailbox.send(message.payload["routed_by"], {"stored": saved})

    async def teardown(self) -> None:
        await self.peers.broadcast({"event": "escalation_offline"})


async def test_mailbox_blob_and_teardown_are_recorded() -> None:
    async with agent_under_test(Escalation) as agent:
        for _ in range(2):
            await agent.mailbox_message({"customer_id": "cust-3", "routed_by": "gateway-1"})
        assert agent.blob_storage.saved == ["escalations/cust-3.txt", "escalations/cust-3-2.txt"]
        agent.blob_storage.assert_saved("escalations/cust-3", "ESCALATION #2")
        agent.mailbox.assert_sent("gateway-1", {"stored": "escalations/cust-3-2.txt"})
        assert len(agent.mailbox.acked) == 2
        with pytest.raises(BlobNotFound):
            await agent.blob_storage.read("escalations/nobody.txt")
    agent.peers.assert_broadcast({"event": "escalation_offline"})  # teardown ran


async def test_the_mock_mailbox_redelivers_a_failure_then_buries_it() -> None:
    mailbox = MockMailbox("billing-1", max_deliveries=2)
    mailbox.deliver({"invoice": 7})
    first = await mailbox.receive(timeout=0)
    assert first is not None and first.delivery_count == 1
    assert await mailbox.fail(first, ValueError("no such invoice")) is False
    second = await mailbox.receive(timeout=0)
    assert second is not None and second.delivery_count == 2
    assert second.message_id == first.message_id
    assert await mailbox.fail(second, ValueError("still none")) is True
    assert await mailbox.receive(timeout=0) is None
    (dead,) = await mailbox.dead_letters()
    assert (dead.message_id, dead.deliveries) == (first.message_id, 2)
    assert (dead.error, dead.error_type) == ("still none", "ValueError")
    assert [text for _, text in mailbox.failed] == ["no such invoice", "still none"]


async def test_payloads_are_checked_as_on_a_real_route() -> None:
    peers = MockPeerClient("a-1", "a")
    peers.add_peer("b")
    with pytest.raises(PayloadError, match=r"\$\.when"):
        await peers.notify("b", {"when": object()})
    assert await peers.notify("nobody", {}) is False
    assert await peers.request("nobody", {}) is None
    with pytest.raises(ValueError, match="no agent matches"):
        await peers.ask_async("nobody", {})
    peers.set_response("b", {"ok": 1})
    request_id = await peers.ask_async("b", {"x": 1})
    assert peers.inbox_status(request_id) == "ready"
    assert await peers.check_inbox(request_id) == {"ok": 1}


async def test_mock_mesh_runs_the_lifecycle_and_wires_discovery() -> None:
    mesh = MockMesh()
    scout = mesh.add(ScoutAgent)
    mesh.add(Careful, agent_id="careful-1")
    async with mesh:
        assert mesh.get_agent("scout") is scout and mesh.get_agent("careful-1") is not None
        peers = mesh.peers_of(scout)
        assert peers.list_roles() == ["careful"] and peers.get_peer("careful") is not None
        mesh.peers_of("careful-1").set_response("scout", {"valid": True})
        await scout.execute_task("s-9", {"mission_id": "x"})
        assert mesh.get_diagnostics()["status"] == "local"
    assert mesh.state == "stopped"
    peers.assert_notified("analyst")

    failing = MockMesh()
    with pytest.raises(KeyError, match="inside"):
        async with failing:
            raise KeyError("inside")
    assert failing.state == "stopped"  # stopped, and the exception went on
