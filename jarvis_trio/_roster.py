"""The agents of one node by id, in registration order: the look-ups the real mesh and the
mesh of test doubles (:class:`~jarvis_trio.testing.MockMesh`) share, so the two answer
alike."""

from __future__ import annotations

from .agent import Agent

__all__ = ["AgentRoster"]


class AgentRoster:
    """Mixed into a mesh that keeps its agents in ``_agents`` (agent_id -> agent)."""

    _agents: dict[str, Agent]

    @property
    def agents(self) -> list[Agent]:
        """The node's agents, in registration order."""
        return list(self._agents.values())

    def get_agent(self, key: str) -> Agent | None:
        """A local agent by id, or else the first local agent of role ``key`` (in registration
        order, as JarvisCore's ``get_agent(role)``); ``None`` if neither matches."""
        agent = self._agents.get(key)
        if agent is not None:
            return agent
        return next((a for a in self._agents.values() if a.role == key), None)
