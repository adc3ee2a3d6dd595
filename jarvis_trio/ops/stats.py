"""One node's counters as one JSON document: what ``/stats`` serves and ``/metrics`` reads.

There is one set of numbers: the counters the runtime keeps anyway (the router's
:class:`~jarvis_trio.peers.router.NodeStats`, the pending table, the inboxes, the cross-node
layer, the bridge, SWIM, the event hub). Nothing here counts anything itself; it only reads.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..mesh import Mesh

__all__ = ["snapshot"]


def snapshot(mesh: Mesh) -> dict[str, Any]:
    """Every counter of ``mesh`` (JSON-compatible), grouped by the layer that keeps it."""
    router = mesh.router
    inboxes = {}
    for agent in mesh.agents:
        inbox = agent._inbox_
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
    cluster = mesh.cluster_node
    if cluster is not None:
        out["cluster"] = cluster.stats()
        out["swim"] = cluster.swim.stats()
        states: dict[str, int] = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
        for member in cluster.members():
            states[member.state] += 1
        out["members"] = states
    else:
        out["members"] = {"alive": 1, "suspect": 0, "dead": 0, "left": 0}
    return out
