"""What the public membership view is computed from: SWIM events turned into operator words.

SWIM speaks of records (``join``, ``alive``, ``suspect``, ``dead``, ``left``, ``metadata``); an
operator (and ``mesh.membership_events()``) speaks of nodes that *joined*, were *updated*, are
*suspect*, *failed*, *left* or *rejoined*. The difference is memory: whether a node that joins
was known dead before, and since when each node is in its state. :class:`MembershipTracker`
keeps that memory (one entry per node ever seen, bounded by SWIM's own member table) and is
pure, so the mapping is tested without sockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..peers.membership import MemberInfo, MemberStateName
from ..swim import EventKind, Member, MembershipEvent, MemberState

__all__ = ["MembershipTracker"]

_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)
_GONE = (MemberState.DEAD, MemberState.LEFT)
_STATE_NAMES: dict[MemberState, MemberStateName] = {
    MemberState.ALIVE: "alive",
    MemberState.SUSPECT: "suspect",
    MemberState.DEAD: "dead",
    MemberState.LEFT: "left",
}
_EVENT_NAMES = {
    EventKind.SUSPECT: "suspect",
    EventKind.ALIVE: "updated",  # a suspect refuted the suspicion
    EventKind.METADATA: "updated",
    EventKind.DEAD: "failed",
    EventKind.LEFT: "left",
}
_PUBLIC_KINDS = ("joined", "updated", "suspect", "failed", "left", "rejoined")
_KIND_OF_STATE = {
    MemberState.ALIVE: EventKind.ALIVE,
    MemberState.SUSPECT: EventKind.SUSPECT,
    MemberState.DEAD: EventKind.DEAD,
    MemberState.LEFT: EventKind.LEFT,
}


class MembershipTracker:
    """Last state and state-change time of every node seen; maps SWIM events to public
    kinds. (Whether the node has joined is the cluster node's to say: see
    :attr:`~jarvis_trio.cluster.ClusterNode.joined`.)"""

    def __init__(self, local: str, *, clock: Callable[[], float] = time.time) -> None:
        self.local = local
        self._clock = clock
        self._states: dict[str, MemberState] = {}
        self._since: dict[str, float] = {local: clock()}
        self.counts: dict[str, int] = dict.fromkeys(_PUBLIC_KINDS, 0)
        """Public events observed, by kind (``suspect`` counts suspicions)."""

    def observe(self, event: MembershipEvent) -> str | None:
        """Record ``event``; its public kind, or ``None`` for events about this node and
        resync markers."""
        member = event.member
        if event.kind is None or member.name == self.local:
            return None
        previous = self._states.get(member.name)
        if event.kind is EventKind.JOIN:
            kind = "rejoined" if previous in _GONE else "joined"
        else:
            kind = _EVENT_NAMES[event.kind]
        if previous != member.state:
            self._since[member.name] = self._clock()
        self._states[member.name] = member.state
        self.counts[kind] += 1
        return kind

    def resync(self, members: Iterable[Member]) -> list[MembershipEvent]:
        """The events that explain the differences between what was observed and the view
        ``members`` (after a subscriber fell behind and lost events)."""
        found = []
        for member in members:
            previous = self._states.get(member.name)
            if member.name == self.local or previous == member.state:
                continue
            if member.state in _LIVE and (previous is None or previous in _GONE):
                kind = EventKind.JOIN
            else:
                kind = _KIND_OF_STATE[member.state]
            found.append(MembershipEvent(kind, member))
        return found

    def info(self, member: Member, agents: int) -> MemberInfo:
        """The public record of ``member`` running ``agents`` agents."""
        host, port = member.meta.host, member.meta.port
        return MemberInfo(
            name=member.name,
            address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            data_port=member.meta.data_port,
            state=_STATE_NAMES[member.state],
            incarnation=member.incarnation,
            epoch=member.epoch,
            agents=agents,
            since=self._since.get(member.name, 0.0),
            local=member.name == self.local,
        )
