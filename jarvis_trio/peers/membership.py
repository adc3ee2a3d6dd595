"""The public view of the cluster: member snapshots and a bounded stream of events.

:class:`MemberInfo` is what ``mesh.members()`` returns: one frozen record per node of the SWIM
view (this node included). :class:`ClusterEvent` is what ``mesh.membership_events()`` yields:
membership changes (``joined``, ``updated``, ``suspect``, ``failed``, ``left``,
``rejoined``) and, for streams opened with ``agents=True``, agents appearing and vanishing
(``agent_added``, ``agent_removed``).

Why a drop-oldest buffer rather than a memory channel: the publisher is the membership watcher
(and the agent directory), which must never wait for a consumer; and what an operator wants
from a stream that fell behind is the *latest* picture, not the oldest. So each stream keeps at
most ``maxlen`` events; when a new one does not fit, the oldest is discarded and counted in
:attr:`EventStream.lost`, and the consumer next sees one ``lost`` event carrying how many it
missed (then re-reads ``mesh.members()`` if it needs the whole picture).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

if TYPE_CHECKING:
    from .directory import PeerInfo

__all__ = [
    "MEMBERSHIP_KINDS",
    "ClusterEvent",
    "EventHub",
    "EventStream",
    "MemberInfo",
    "MemberStateName",
]

MemberStateName = Literal["alive", "suspect", "dead", "left"]
MEMBERSHIP_KINDS = frozenset({"joined", "updated", "suspect", "failed", "left", "rejoined"})
AGENT_KINDS = frozenset({"agent_added", "agent_removed"})
DEFAULT_MAXLEN = 256


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One node as the local SWIM view sees it.

    ``address`` is the SWIM ``host:port``; ``data_port`` the ZeroMQ port (0 without P2P);
    ``agents`` how many agents the node runs as far as this node knows; ``since`` the wall
    clock time (seconds since the epoch) of the last state change seen here; ``local`` marks
    this node's own record; ``epoch`` names the node's life (a new one at every start, so a
    changed epoch means the node restarted) and ``incarnation`` counts refutations within it.
    """

    name: str
    address: str
    data_port: int
    state: MemberStateName
    incarnation: int
    agents: int
    since: float
    local: bool = False
    epoch: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form served by the admin endpoint and printed by ``jarvis-trio members``."""
        return {
            "name": self.name,
            "address": self.address,
            "data_port": self.data_port,
            "state": self.state,
            "epoch": self.epoch,
            "incarnation": self.incarnation,
            "agents": self.agents,
            "since": self.since,
            "local": self.local,
        }


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """One change seen by this node.

    ``kind`` is a membership kind (``member`` set), an agent kind (``agent`` set, ``reason``
    saying why an agent vanished: ``left``, ``failed`` or ``removed``), or ``lost`` (``lost``
    events were discarded before this one because the consumer fell behind).
    """

    kind: str
    time: float
    member: MemberInfo | None = None
    agent: PeerInfo | None = None
    reason: str | None = None
    lost: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (one line of ``/events``)."""
        out: dict[str, Any] = {"event": self.kind, "time": self.time}
        if self.member is not None:
            out["member"] = self.member.as_dict()
        if self.agent is not None:
            out["agent"] = self.agent.as_dict()
        if self.reason is not None:
            out["reason"] = self.reason
        if self.kind == "lost":
            out["lost"] = self.lost
        return out


class EventStream:
    """A bounded, drop-oldest stream of :class:`ClusterEvent`; iterate with ``async for``.

    Opened by :meth:`EventHub.open` (``mesh.membership_events()``); closing it (leaving the
    ``async with``) unsubscribes. Iteration ends when the node stops.
    """

    def __init__(self, hub: EventHub, maxlen: int, agents: bool) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen!r}")
        self._hub = hub
        self.maxlen = maxlen
        self.agents = agents
        self._buffer: deque[ClusterEvent] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self._unreported = 0
        self.lost = 0
        """Events discarded so far because this consumer fell behind."""

    def _offer(self, event: ClusterEvent) -> None:
        if event.kind in AGENT_KINDS and not self.agents:
            return
        buffer = self._buffer
        if len(buffer) >= self.maxlen:
            buffer.popleft()
            self.lost += 1
            self._unreported += 1
            self._hub.lost += 1
        buffer.append(event)
        self._lot.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ClusterEvent:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._lot.park()
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._unreported:
            missed, self._unreported = self._unreported, 0
            return ClusterEvent("lost", time.time(), lost=missed)
        return self._buffer.popleft()

    async def receive(self) -> ClusterEvent:
        """The next event; raises ``trio.EndOfChannel`` once the node stopped."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise trio.EndOfChannel from None

    def close(self) -> None:
        """Unsubscribe; buffered events are discarded."""
        self._hub._streams.discard(self)
        self._buffer.clear()
        self._close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Fans events out to every open :class:`EventStream` without ever waiting."""

    def __init__(self) -> None:
        self._streams: set[EventStream] = set()
        self._closed = False
        self.published = 0
        self.lost = 0
        """Events discarded over all streams (``membership_events_lost`` in the stats)."""

    def open(self, *, maxlen: int = DEFAULT_MAXLEN, agents: bool = False) -> EventStream:
        """A new stream of the events published from now on."""
        stream = EventStream(self, maxlen, agents)
        if self._closed:
            stream._close()
        else:
            self._streams.add(stream)
        return stream

    def publish(self, event: ClusterEvent) -> None:
        """Offer ``event`` to every stream (drop-oldest in each); never blocks."""
        self.published += 1
        for stream in self._streams:
            stream._offer(event)

    def close(self) -> None:
        """End every stream (the node stopped); streams opened later end at once."""
        self._closed = True
        for stream in self._streams:
            stream._close()
        self._streams.clear()

    @property
    def subscribers(self) -> int:
        """Open streams."""
        return len(self._streams)
