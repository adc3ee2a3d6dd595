"""The agent directory of one node: its own agents and the agents other nodes advertise.

Lookups are by agent_id (one dict each) or by filter (role and/or capability); a filter's
answer is cached as a tuple until the directory changes, so discovery on the hot path costs
one dict look-up. Order is the contract: local agents before remote ones, each in
registration order.

:attr:`AgentDirectory.version` counts changes to the *local* agents. The cross-node layer
publishes it in the node's membership record so other nodes know when to fetch the list
again; remote changes do not move it (they never need re-publishing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec
from trio_util import AsyncValue

from ..errors import DuplicateAgentError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["AgentDirectory", "AgentListener", "PeerInfo"]

L = TypeVar("L")


class PeerInfo(msgspec.Struct, frozen=True):
    """What the mesh knows about one agent (an entry of ``peers.registry``)."""

    agent_id: str
    role: str
    capabilities: tuple[str, ...] = ()
    description: str = ""
    node_id: str = ""
    location: str = "local"
    status: str = "active"

    def as_dict(self) -> dict[str, Any]:
        """The ``list_peers()`` form."""
        return {
            "role": self.role,
            "agent_id": self.agent_id,
            "capabilities": list(self.capabilities),
            "description": self.description,
            "status": self.status,
            "location": self.location,
            "node_id": self.node_id,
        }


AgentListener = Callable[[str, "PeerInfo", "str | None"], None]
"""Called as ``listener(kind, info, reason)`` with ``kind`` ``agent_added`` or
``agent_removed``; ``reason`` (removals) is ``left``, ``failed`` or ``removed``."""

_FilterKey = tuple[str | None, str | None]
_MAX_CACHED_FILTERS = 1024  # distinct (role, capability) answers kept; beyond it, start over


class AgentDirectory(Generic[L]):
    """Local agents (each with a route object of type ``L``) plus remote agents by node."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.version: AsyncValue[int] = AsyncValue(0)
        self._local: dict[str, tuple[PeerInfo, L]] = {}
        self._remote: dict[str, dict[str, PeerInfo]] = {}
        self._remote_by_id: dict[str, PeerInfo] = {}
        self._cache: dict[_FilterKey, tuple[PeerInfo, ...]] = {}
        self._registry: Mapping[str, PeerInfo] | None = None
        self.epoch = 0  # counts every change, local or remote (for callers' caches)
        # the same count, observable: lets callers wait for agents to appear or go
        self.changes: AsyncValue[int] = AsyncValue(0)
        # told of every agent that appears or vanishes (the mesh's event hub and peer hooks);
        # it must not block or raise
        self.listener: AgentListener | None = None

    # -- local agents -------------------------------------------------------------------

    def add_local(self, info: PeerInfo, route: L) -> None:
        """Register a local agent; its ``agent_id`` must be new on this node."""
        if info.agent_id in self._local:
            raise DuplicateAgentError(f"agent_id {info.agent_id!r} is already registered")
        self._local[info.agent_id] = (info, route)
        self._changed(local=True)
        if self.listener is not None:
            self.listener("agent_added", info, None)

    def remove_local(self, agent_id: str) -> None:
        """Forget a local agent (no error when it is unknown)."""
        found = self._local.pop(agent_id, None)
        if found is not None:
            self._changed(local=True)
            if self.listener is not None:
                self.listener("agent_removed", found[0], "removed")

    def local_route(self, agent_id: str) -> L | None:
        """The route object of a local agent, or ``None``."""
        found = self._local.get(agent_id)
        return None if found is None else found[1]

    def local_agents(self) -> list[PeerInfo]:
        """Local agents in registration order: what this node advertises to others."""
        return [info for info, _ in self._local.values()]

    # -- remote agents (fed by the cross-node layer) ------------------------------------

    def set_remote_agents(
        self, node_id: str, agents: Iterable[PeerInfo], *, reason: str = "removed"
    ) -> None:
        """Replace everything known about ``node_id``'s agents; agents that vanish are
        reported to the listener with ``reason``."""
        if node_id == self.node_id:
            raise ValueError(f"node {node_id!r} is this node; its agents are local")
        fresh = {
            a.agent_id: msgspec.structs.replace(a, node_id=node_id, location="remote")
            for a in agents
        }
        old = self._remote.pop(node_id, {})
        for agent_id in old:
            self._remote_by_id.pop(agent_id, None)
        if fresh:
            self._remote[node_id] = fresh
            self._remote_by_id.update(fresh)
        self._changed(local=False)
        listener = self.listener
        if listener is not None:
            for agent_id, info in old.items():
                if agent_id not in fresh:
                    listener("agent_removed", info, reason)
            for agent_id, info in fresh.items():
                if agent_id not in old:
                    listener("agent_added", info, None)

    def drop_node(self, node_id: str, reason: str = "left") -> None:
        """Forget every agent of a node that left (or, with ``reason="failed"``, died)."""
        if node_id in self._remote:
            self.set_remote_agents(node_id, (), reason=reason)

    def remote_count(self, node_id: str) -> int:
        """How many agents ``node_id`` runs, as far as this node knows."""
        return len(self._remote.get(node_id, ()))

    def remote_nodes(self) -> list[str]:
        """Nodes whose agents are known."""
        return list(self._remote)

    # -- queries ------------------------------------------------------------------------

    def get(self, agent_id: str) -> tuple[PeerInfo, L | None] | None:
        """An agent by id: ``(info, route)`` for a local one, ``(info, None)`` for remote."""
        local = self._local.get(agent_id)
        if local is not None:
            return local
        remote = self._remote_by_id.get(agent_id)
        return None if remote is None else (remote, None)

    def matching(
        self, role: str | None = None, capability: str | None = None
    ) -> tuple[PeerInfo, ...]:
        """Agents matching both filters (a ``None`` filter matches all): local first, then
        remote, each in registration order."""
        key = (role, capability)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = tuple(
            info
            for info in self._all()
            if (role is None or info.role == role)
            and (capability is None or capability in info.capabilities)
        )
        if len(self._cache) >= _MAX_CACHED_FILTERS:
            self._cache.clear()
        self._cache[key] = found
        return found

    def registry(self) -> Mapping[str, PeerInfo]:
        """Read-only view of every agent, local and remote (cached until a change)."""
        if self._registry is None:
            self._registry = MappingProxyType({info.agent_id: info for info in self._all()})
        return self._registry

    def __len__(self) -> int:
        return len(self._local) + len(self._remote_by_id)

    def _all(self) -> Iterator[PeerInfo]:
        for info, _ in self._local.values():
            yield info
        for agents in self._remote.values():
            yield from agents.values()

    def _changed(self, *, local: bool) -> None:
        self.epoch += 1
        self._cache.clear()
        self._registry = None
        if local:
            self.version.value += 1
        # last: AsyncValue runs waiters' predicates inside this assignment, and they must
        # see the directory as it is now, not a cached answer from before the change
        self.changes.value = self.epoch
