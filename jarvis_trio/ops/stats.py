"""One node's counters as one JSON document: what ``/stats`` serves and ``/metrics`` reads.

There is one set of numbers: the counters the runtime keeps anyway (the router's
:class:`~jarvis_trio.peers.router.NodeStats`, the pending table, the inboxes, the cross-node
layer, the bridge, SWIM, the event hub). Nothing here counts anything itself; it only reads.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..agent import Agent
    from ..cluster import ClusterNode
    from ..config import MeshConfig
    from ..peers.directory import AgentDirectory
    from ..peers.inbox import AgentInbox
    from ..peers.membership import EventHub, EventStream, MemberInfo
    from ..peers.router import Router
    from ..services import NodeServices
    from ..swim.keyring import Keyring

__all__ = ["OperatedNode", "mailbox_lag", "snapshot"]


class OperatedNode(Protocol):
    """What the operator's side reads from a node (a :class:`~jarvis_trio.mesh.Mesh`).

    A protocol rather than the ``Mesh`` class: the mesh starts the admin endpoint, so the
    endpoint must not import the mesh back.
    """

    node_id: str
    config: MeshConfig
    router: Router
    events: EventHub
    peer_hooks_dropped: int
    keyring: Keyring | None

    @property
    def state(self) -> str: ...
    @property
    def ready(self) -> bool: ...
    @property
    def joined(self) -> bool: ...
    @property
    def agents(self) -> list[Agent]: ...
    @property
    def directory(self) -> AgentDirectory[AgentInbox]: ...
    @property
    def cluster_node(self) -> ClusterNode | None: ...
    @property
    def services(self) -> NodeServices | None: ...
    def members(self) -> list[MemberInfo]: ...
    def membership_events(self, *, maxlen: int = ..., agents: bool = ...) -> EventStream: ...


async def mailbox_lag(mesh: OperatedNode) -> dict[str, int] | None:
    """The consumer lag of the node's local agents, summed by role (see
    :meth:`~jarvis_trio.mailbox.contracts.MailboxHub.consumer_lag`); ``None`` while the
    mailboxes are not open. Asked of the hub at each read: an in-process hub answers from
    memory, a Redis one with one ``XLEN`` per local agent."""
    services = mesh.services
    if services is None:
        return None
    roles = {agent.agent_id: agent.role for agent in mesh.agents}
    lag = await services.mailboxes.consumer_lag(list(roles))
    by_role: dict[str, int] = {}
    for agent_id, count in lag.items():
        role = roles[agent_id]
        by_role[role] = by_role.get(role, 0) + count
    return by_role


def snapshot(mesh: OperatedNode, mailbox_lag: dict[str, int] | None = None) -> dict[str, Any]:
    """Every counter of ``mesh`` (JSON-compatible), grouped by the layer that keeps it;
    ``mailbox_lag`` (from :func:`mailbox_lag`, which must be awaited) is reported under
    ``mailbox.consumer_lag``."""
    router = mesh.router
    inboxes = {}
    for agent in mesh.agents:
        inbox = mesh.directory.local_route(agent.agent_id)
        if inbox is not None:
            inboxes[agent.agent_id] = {
                "role": agent.role,
                "depth": len(inbox),
                "capacity": inbox.capacity,
            }
    out: dict[str, Any] = {
        "node": mesh.node_id,
        "state": mesh.state,
        "ready": mesh.ready,
        "joined": mesh.joined,
        "time": time.time(),
        "agents": {"local": len(mesh.agents), "total": len(mesh.directory)},
        "messages": dataclasses.asdict(router.stats),
        "requests": router.traffic.as_dict(),
        "pending": {"open": len(router.pending), "late_replies": router.pending.late_replies},
        "inboxes": inboxes,
        "events": {
            "published": mesh.events.published,
            "lost": mesh.events.lost,
            "subscribers": mesh.events.subscribers,
            "peer_hooks_dropped": mesh.peer_hooks_dropped,
        },
    }
    services = mesh.services
    if services is not None:
        out["mailbox"] = {"kind": services.mailboxes.kind, **services.mailboxes.stats()}
        if mailbox_lag is not None:
            out["mailbox"]["consumer_lag"] = mailbox_lag
        if services.auth_manager is not None:
            out["nexus"] = services.auth_manager.nexus_calls()
    cluster = mesh.cluster_node
    if cluster is not None:
        out["cluster"] = cluster.stats()
        out["swim"] = cluster.swim.stats()
        out["swim_probe_rtt"] = cluster.swim.probe_rtt.as_dict()
        states: dict[str, int] = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
        for member in cluster.members():
            states[member.state] += 1
        out["members"] = states
    else:
        out["members"] = {"alive": 1, "suspect": 0, "dead": 0, "left": 0}
    return out
