"""MockMesh: several agents wired to test doubles, with the documented lifecycle.

``add`` registers agents; ``start`` gives each a :class:`MockPeerClient` that knows every other
added agent (so discovery works), a :class:`MockMailbox`, one shared
:class:`MockBlobStorage`, and runs every ``setup()``; ``stop`` runs every ``teardown()``. It
does not route messages between its agents (that is the real :class:`~jarvis_trio.Mesh`'s job,
and cheap to run in a test): each agent's traffic is recorded on its own double and answered
from its scripts. ``start`` and ``stop`` must run in the same Trio task (``async with`` does).
"""

from __future__ import annotations

import secrets
from contextlib import AsyncExitStack
from typing import Any

from ..._roster import AgentRoster
from ...agent import Agent
from ...errors import MeshError
from .harness import AgentHarness, agent_under_test
from .peers import MockPeerClient
from .storage import MockBlobStorage, MockMailbox

__all__ = ["MockMesh"]


class MockMesh(AgentRoster):
    """A mesh of doubles (see the module doc)."""

    def __init__(self, config: dict[str, Any] | None = None, *, node_id: str = "mock-node") -> None:
        self.config = dict(config or {})
        self.node_id = node_id
        self.blob_storage = MockBlobStorage()
        self.harnesses: dict[str, AgentHarness[Agent]] = {}
        self._agents: dict[str, Agent] = {}
        self._state = "new"
        self._stack: AsyncExitStack | None = None

    @property
    def state(self) -> str:
        """``new``, ``running`` or ``stopped``."""
        return self._state

    def add(self, agent: type[Agent] | Agent, agent_id: str | None = None) -> Agent:
        """Register an agent class (or instance) before :meth:`start`; returns the agent."""
        if self._state != "new":
            raise MeshError("MockMesh.add: add every agent before start()")
        instance = agent() if isinstance(agent, type) else agent
        chosen = agent_id or instance.agent_id or f"{instance.role}-{secrets.token_hex(4)}"
        if chosen in self._agents:
            raise MeshError(f"duplicate agent_id {chosen!r}")
        instance.agent_id = chosen
        self._agents[chosen] = instance
        return instance

    def peers_of(self, agent: Agent | str) -> MockPeerClient:
        """The :class:`MockPeerClient` of an agent (by instance or id), once started."""
        agent_id = agent if isinstance(agent, str) else agent.agent_id
        return self.harnesses[agent_id].peers

    async def start(self) -> None:
        """Inject the doubles into every agent and run every ``setup()``."""
        if self._state != "new":
            raise MeshError(f"MockMesh.start: the mesh is {self._state}")
        stack = AsyncExitStack()
        await stack.__aenter__()
        self._stack = stack
        try:
            for agent in self._agents.values():
                peers = MockPeerClient(agent.agent_id, agent.role, node_id=self.node_id)
                for other in self._agents.values():
                    if other is not agent:
                        peers.add_peer(
                            other.role,
                            other.agent_id,
                            capabilities=tuple(other.capabilities),
                            description=other.description,
                        )
                harness = await stack.enter_async_context(
                    agent_under_test(
                        agent,
                        peers=peers,
                        mailbox=MockMailbox(agent.agent_id),
                        blob_storage=self.blob_storage,
                    )
                )
                self.harnesses[agent.agent_id] = harness
        except BaseException:
            await self.stop()
            raise
        self._state = "running"

    async def stop(self) -> None:
        """Run every ``teardown()`` (in reverse order of setup)."""
        stack, self._stack = self._stack, None
        self._state = "stopped"
        if stack is not None:
            await stack.aclose()

    def get_diagnostics(self) -> dict[str, Any]:
        """The shape of :meth:`jarvis_trio.Mesh.get_diagnostics`, for a mesh of doubles."""
        return {
            "node_id": self.node_id,
            "state": self._state,
            "status": "local" if self._state == "running" else "stopped",
            "local_agents": [{"agent_id": a.agent_id, "role": a.role} for a in self.agents],
            "remote_agents": [],
            "known_peers": [],
            "swim": {"status": "off"},
        }

    async def __aenter__(self) -> MockMesh:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop whether the block raised or not; an exception propagates."""
        await self.stop()
