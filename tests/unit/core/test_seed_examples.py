"""The seed document's own snippets, run as written (inside agents of a real mesh)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from seed_snippets import ask_every_analyst

from jarvis_trio.agent import CustomAgent
from jarvis_trio.peers.messages import IncomingMessage

from .conftest import Idle, MeshFactory


class Worker(CustomAgent):
    role = "worker"
    capabilities = ["processing"]
    served: list[str] = []

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        type(self).served.append(self.agent_id)
        return {"done": message.data["task"]}


async def test_load_balancing_with_least_recent_and_record_peer_usage(
    make_mesh: MeshFactory,
) -> None:
    Worker.served = []
    async with make_mesh() as mesh:
        agent = await mesh.start_agent(Idle)
        workers = [(await mesh.start_agent(Worker)).agent_id for _ in range(3)]
        self = agent  # the snippet is written from inside an agent
        for n in range(6):
            worker = self.peers.discover_one(capability="processing", strategy="least_recent")
            if worker:
                response = await self.peers.request(worker.agent_id, {"task": f"t{n}"})
                if response:
                    self.peers.record_peer_usage(worker.agent_id)
        assert Worker.served == workers + workers  # evenly spread, oldest first


class Analyst(CustomAgent):
    role = "analyst"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        await trio.sleep(1)
        return {"answer": f"{self.agent_id}: {message.data['question']}"}


async def test_async_request_pattern(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh() as mesh:
        agent = await mesh.start_agent(Idle)
        for _ in range(3):
            await mesh.start_agent(Analyst)
        self = agent
        analysts = self.peers.discover(role="analyst")
        start = trio.current_time()

        async def process_other_tasks() -> None:
            await trio.sleep(0.5)

        results = await ask_every_analyst(self, process_other_tasks)

        assert len(results) == 3
        assert {r["answer"].split(":")[0] for r in results} == {a.agent_id for a in analysts}
        assert trio.current_time() - start == 1  # the three ran in parallel


async def test_receive_respond_snippet_with_context_propagation(make_mesh: MeshFactory) -> None:
    class Scout(CustomAgent):
        role = "scout"

        async def run(self) -> None:
            while True:
                message = await self.peers.receive(timeout=5)
                if message and message.is_request:
                    await self.peers.respond(message, {"status": "acknowledged"})

    async with make_mesh() as mesh:
        agent = await mesh.start_agent(Idle)
        await mesh.start_agent(Scout)
        response = await agent.peers.request_message(
            "scout",
            {"need": "clarification", "entity": "Entity_X"},
            timeout=30,
            context={"mission_id": "abc123"},
        )
        assert response is not None
        assert response.data == {"status": "acknowledged"}
        assert response.context == {"mission_id": "abc123"}


async def test_notify_snippet_and_broadcast_count(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        scout = await mesh.start_agent(Idle)

        class AnalystInbox(Idle):
            role = "analyst"

        analyst = await mesh.start_agent(AnalystInbox)
        summary = {"signals": 3}
        ok = await scout.peers.notify(
            "analyst",
            {"event": "scouting_complete", "data": {"findings": summary}},
            context={"mission_id": "abc123", "priority": "high"},
        )
        assert ok is True
        count = await scout.peers.broadcast(
            {"event": "status_update", "status": "completed"},
            context={"mission_id": "abc123"},
        )
        assert count == 1
        first = await analyst.peers.receive(timeout=0)
        second = await analyst.peers.receive(timeout=0)
        assert first is not None and first.data["data"] == {"findings": summary}
        assert first.context == {"mission_id": "abc123", "priority": "high"}
        assert second is not None and second.data["status"] == "completed"


async def test_two_agents_sharing_a_role_under_broadcast(make_mesh: MeshFactory) -> None:
    received: dict[str, list[Any]] = {}

    class Reporter(CustomAgent):
        role = "reporter"

        async def on_peer_notify(self, message: IncomingMessage) -> None:
            received.setdefault(self.agent_id, []).append((message.sender, message.data))

    async with make_mesh() as mesh:
        r1 = await mesh.start_agent(Reporter)
        r2 = await mesh.start_agent(Reporter)

        class Observer(CustomAgent):
            role = "observer"

        await mesh.start_agent(Observer)
        assert await r1.peers.broadcast({"from": "r1"}) == 2  # its twin and the observer
        await trio.testing.wait_all_tasks_blocked()  # every handler has run
        assert received == {r2.agent_id: [(r1.agent_id, {"from": "r1"})]}  # never to itself
