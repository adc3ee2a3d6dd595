"""Agents: class attributes, identity, injection before setup(), handler dispatch,
max_concurrency, task-style run(), the mailbox loop, teardown."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
import trio.testing

from jarvis_trio.agent import Agent, CustomAgent
from jarvis_trio.errors import AgentDefinitionError, DuplicateAgentError, MeshError
from jarvis_trio.peers.messages import IncomingMessage
from jarvis_trio.services import Mailbox, MailboxMessage

from .conftest import Echo, Idle, MeshFactory


async def test_agent_id_format_and_explicit_ids(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        echo = await mesh.start_agent(Echo)
        assert re.fullmatch(r"echo-[0-9a-f]{8}", echo.agent_id)
        named = await mesh.start_agent(Echo, agent_id="echo-main")
        assert named.agent_id == "echo-main"
        with pytest.raises(DuplicateAgentError, match="echo-main"):
            mesh.add(Echo, agent_id="echo-main")
        with pytest.raises(DuplicateAgentError):
            await mesh.start_agent(Echo, agent_id=echo.agent_id)


def test_a_class_without_role_is_refused_at_add(new_mesh: Any) -> None:
    class Nameless(CustomAgent):
        name = "nameless"

    class BadCaps(CustomAgent):
        role = "x"
        capabilities = "one-string"  # type: ignore[assignment]

    class BadConcurrency(CustomAgent):
        role = "x"
        max_concurrency = 0

    mesh = new_mesh()
    with pytest.raises(AgentDefinitionError, match="Nameless has no role"):
        mesh.add(Nameless)
    with pytest.raises(AgentDefinitionError, match="capabilities"):
        mesh.add(BadCaps)
    with pytest.raises(AgentDefinitionError, match="max_concurrency"):
        mesh.add(BadConcurrency)
    with pytest.raises(AgentDefinitionError, match="not an Agent"):
        mesh.add(int)


def test_peers_before_adding_is_a_clear_error() -> None:
    with pytest.raises(MeshError, match="added to a mesh"):
        _ = Echo().peers


async def test_everything_is_injected_before_setup(make_mesh: MeshFactory) -> None:
    seen: dict[str, Any] = {}

    class Inspector(CustomAgent):
        role = "inspector"
        requires_auth = True

        async def setup(self) -> None:
            seen["peers"] = self.peers.my_id
            seen["mailbox"] = self.mailbox
            seen["blob"] = self._blob_storage
            seen["redis"] = self._redis_store
            seen["auth"] = self._auth_manager
            seen["logger"] = self._logger

    class Plain(CustomAgent):
        role = "plain"

        async def setup(self) -> None:
            seen["plain_auth"] = self._auth_manager
            seen["plain_blob"] = self._blob_storage

    async with make_mesh() as mesh:
        agent = await mesh.start_agent(Inspector)
        await mesh.start_agent(Plain)
        assert seen["peers"] == agent.agent_id
        assert isinstance(seen["mailbox"], Mailbox)
        assert seen["mailbox"].agent_id == agent.agent_id
        assert seen["blob"] is not None and seen["plain_blob"] is seen["blob"]
        assert seen["redis"] is None  # no redis_url configured
        assert seen["auth"] is not None
        assert seen["plain_auth"] is None
        assert seen["logger"] is not None


async def test_default_run_serves_requests_and_notifications(make_mesh: MeshFactory) -> None:
    notes: list[dict[str, Any]] = []

    class Listener(CustomAgent):
        role = "listener"

        async def on_peer_notify(self, message: IncomingMessage) -> None:
            notes.append(message.data)

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            return {"notes": len(notes)}

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Listener)
        for n in range(3):
            assert await caller.peers.notify("listener", {"n": n})
        # one message at a time, in arrival order: the request comes after the notifications
        assert await caller.peers.request("listener", {}) == {"notes": 3}
        assert notes == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_default_on_peer_request_refuses_with_an_error_reply(
    make_mesh: MeshFactory,
) -> None:
    class Mute(CustomAgent):
        role = "mute"

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Mute)
        reply = await caller.peers.request("mute", {})
        assert reply is not None and reply["error_type"] == "NotImplementedError"


async def test_returning_none_means_the_handler_answers_itself(make_mesh: MeshFactory) -> None:
    class Deferred(CustomAgent):
        role = "deferred"

        async def on_peer_request(self, message: IncomingMessage) -> None:
            await self.peers.respond(message, {"answered": "by hand"})

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Deferred)
        assert await caller.peers.request("deferred", {}) == {"answered": "by hand"}
        assert mesh.late_replies == 0


async def test_a_raising_notify_handler_keeps_the_agent_serving(make_mesh: MeshFactory) -> None:
    class Grumpy(CustomAgent):
        role = "grumpy"

        async def on_peer_notify(self, message: IncomingMessage) -> None:
            raise RuntimeError("no")

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            return {"alive": True}

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Grumpy)
        assert await caller.peers.notify("grumpy", {})
        assert await caller.peers.request("grumpy", {}) == {"alive": True}


@pytest.mark.parametrize("limit", [1, 3])
async def test_max_concurrency(
    make_mesh: MeshFactory, limit: int, autojump_clock: trio.abc.Clock
) -> None:
    state = {"now": 0, "peak": 0}

    class Worker(CustomAgent):
        role = "worker"
        max_concurrency = limit

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            await trio.sleep(1)
            state["now"] -= 1
            return {"n": message.data["n"]}

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        await mesh.start_agent(Worker)
        replies: list[Any] = []
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for n in range(6):

                async def ask(n: int = n) -> None:
                    replies.append(await caller.peers.request("worker", {"n": n}))

                nursery.start_soon(ask)
        assert state["peak"] == limit
        assert sorted(r["n"] for r in replies) == list(range(6))
        assert trio.current_time() - start == pytest.approx(6 / limit, abs=0.1)


class Scout(CustomAgent):
    """The seed's task-style agent."""

    name = "Scout"
    role = "scout"
    capabilities = ["reconnaissance", "data-gathering"]

    async def run(self, task: str, context: dict[str, Any]) -> dict[str, Any]:
        await self.peers.notify(
            "analyst",
            {"event": "data_ready", "data": task},
            context={"mission_id": context.get("mission_id")},
        )
        peer_scout = self.peers.discover_one(role="scout", strategy="random")
        if peer_scout:
            validation = await self.peers.request(
                peer_scout.agent_id, {"action": "validate", "data": task}, timeout=15
            )
            if validation and not validation.get("valid"):
                return {"status": "rejected", "feedback": validation["feedback"]}
        return {"status": "complete", "data": task}

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        return {"valid": message.data["data"] != "junk", "feedback": "try again"}


async def test_task_style_run_with_the_inbox_still_served(make_mesh: MeshFactory) -> None:
    class Analyst(Idle):
        role = "analyst"

    async with make_mesh() as mesh:
        plain = await mesh.start_agent(Idle)
        listener = await mesh.start_agent(Analyst)
        s1 = await mesh.start_agent(Scout)
        await mesh.start_agent(Scout)
        result = await s1.execute_task("signals", context={"mission_id": "m1"})
        assert result == {"status": "complete", "data": "signals"}
        assert await mesh.run_task("scout", "junk") == {
            "status": "rejected",
            "feedback": "try again",
        }
        note = await listener.peers.receive(timeout=0)
        assert note is not None and note.context == {"mission_id": "m1"}
        with pytest.raises(MeshError, match="no task entry point"):
            await plain.execute_task("x")
        with pytest.raises(ValueError, match="nobody"):
            await mesh.run_task("nobody", "x")


async def test_execute_task_needs_a_running_agent() -> None:
    with pytest.raises(MeshError, match="not running"):
        scout = Scout()
        scout._task_style = True
        await scout.execute_task("x")


async def test_the_default_loop_serves_the_mailbox(make_mesh: MeshFactory) -> None:
    got: list[MailboxMessage] = []
    done = trio.Event()

    class Specialist(CustomAgent):
        role = "specialist"

        async def on_mailbox_message(self, message: MailboxMessage) -> None:
            got.append(message)
            if message.payload.get("fail"):
                raise ValueError("handler failure is logged, message acknowledged")
            if len(got) == 2:
                done.set()

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            return {"still": "serving"}

    async with make_mesh() as mesh:
        gateway = await mesh.start_agent(Idle)
        specialist = await mesh.start_agent(Specialist)
        assert gateway.mailbox is not None
        gateway.mailbox.send(specialist.agent_id, {"fail": True})
        gateway.mailbox.send(specialist.agent_id, {"query": "q", "customer_id": "c1"})
        with trio.fail_after(5):
            await done.wait()
        assert [m.payload for m in got] == [{"fail": True}, {"query": "q", "customer_id": "c1"}]
        assert got[1].sender == gateway.agent_id
        assert await gateway.peers.request("specialist", {}) == {"still": "serving"}
        assert specialist.mailbox is not None
        assert await specialist.mailbox.peek() is None  # both acknowledged


async def test_teardown_runs_after_setup_failure(make_mesh: MeshFactory) -> None:
    calls: list[str] = []

    class Broken(CustomAgent):
        role = "broken"

        async def setup(self) -> None:
            calls.append("setup")
            raise OSError("no disk")

        async def teardown(self) -> None:
            calls.append("teardown")

    async with make_mesh() as mesh:
        with pytest.raises(OSError, match="no disk"):
            await mesh.start_agent(Broken)
        assert calls == ["setup", "teardown"]
        assert mesh.directory.matching("broken") == ()


def test_agent_base_defaults() -> None:
    assert Agent.max_concurrency == 1
    assert Agent.requires_auth is False
    assert issubclass(CustomAgent, Agent)
    assert "not added" in repr(Echo())


async def test_instances_and_subclasses_that_skip_super_init(make_mesh: MeshFactory) -> None:
    class Custom(CustomAgent):
        role = "custom"

        def __init__(self, greeting: str) -> None:  # no super().__init__()
            self.greeting = greeting

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            return {"greeting": self.greeting}

    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        custom = await mesh.start_agent(Custom("hi"), agent_id="custom-1")
        assert custom.agent_id == "custom-1"
        assert await caller.peers.request("custom", {}) == {"greeting": "hi"}
        with pytest.raises(MeshError, match="already part of a mesh"):
            mesh.add(custom)


async def test_a_mailbox_message_cut_off_by_stop_is_given_back(
    new_mesh: Any, autojump_clock: trio.abc.Clock
) -> None:
    started = trio.Event()
    given_back: list[str] = []

    class Slow(CustomAgent):
        role = "slow"

        async def setup(self) -> None:
            mailbox = self.mailbox
            assert mailbox is not None
            real_nack = mailbox.nack

            async def nack(message: MailboxMessage) -> None:
                given_back.append(message.message_id)
                await real_nack(message)

            mailbox.nack = nack  # type: ignore[method-assign]

        async def on_mailbox_message(self, message: MailboxMessage) -> None:
            started.set()
            await trio.sleep_forever()

    mesh = new_mesh(stop_grace_period=0.5)
    sender = mesh.add(Idle)
    slow = mesh.add(Slow)
    await mesh.start()
    message_id = sender.mailbox.send(slow.agent_id, {"work": 1})
    await started.wait()
    await mesh.stop()
    assert given_back == [message_id]
