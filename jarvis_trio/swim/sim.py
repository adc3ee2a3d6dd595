"""A deterministic simulator: many SWIM nodes, one process, virtual time, a hostile network.

It drives :class:`~jarvis_trio.swim.protocol.SwimProtocol` instances directly (no Trio, no
sockets) from one event heap, which is what makes a thousand nodes over hundreds of periods
fast enough to measure. Every random choice comes from seeded ``random.Random`` instances, so
the same seed gives the same :attr:`Simulator.trace`, byte for byte.

The network model, per datagram: dropped with probability ``loss`` (or if a partition blocks
the direction, or the destination is down); otherwise delivered after ``delay + U(0, jitter)``,
plus ``reorder_delay`` with probability ``reorder`` (so that it overtakes nothing but is
overtaken), and delivered twice with probability ``duplicate``. Faults:

* **crash** - the node stops; datagrams to it vanish. **restart** - a fresh protocol instance
  (empty view, incarnation 0, the next epoch: a new life) on the same address joins through
  the given seeds.
* **stall** - the node processes nothing for a while, then its whole backlog (datagrams and
  timers, in arrival order) at the moment it wakes, as a process paused by GC or a starved CPU.
* **partition** - directed blocking between groups of nodes; asymmetric partitions block one
  direction only.
* **leave** - a graceful leave: the node gossips its *left* record, keeps answering for
  ``leave_grace`` seconds (as a driver does until its leave timeout), then stops.

The protocol class is a parameter (``protocol_factory``), so that a variant - a tuned or a
deliberately broken one - runs on the same virtual network.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from .codec import encode_meta, encode_name
from .config import SwimConfig
from .members import MembershipEvent, MemberState, NodeMeta
from .protocol import Address, Effects, SwimProtocol, TimerToken

__all__ = ["EventListener", "NetConfig", "ProtocolFactory", "SimNode", "Simulator"]

_DELIVER = 0
_TIMER = 1
_ACTION = 2


@dataclass(frozen=True, slots=True)
class NetConfig:
    """The virtual network's behaviour; times in seconds, probabilities 0..1."""

    loss: float = 0.0
    delay: float = 0.001
    jitter: float = 0.001
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.02


class SimNode:
    """One simulated node: its protocol instance and its fate."""

    __slots__ = ("address", "gen", "group", "index", "name", "protocol", "running", "stalled_until")

    def __init__(self, index: int, name: str, address: Address, protocol: SwimProtocol) -> None:
        self.index = index
        self.name = name
        self.address = address
        self.protocol = protocol
        self.gen = 0
        self.running = True
        self.stalled_until = 0.0
        self.group = 0


EventListener = Callable[[float, SimNode, MembershipEvent], None]


class ProtocolFactory(Protocol):
    """What builds a node's protocol: :class:`SwimProtocol` itself, a subclass, a function."""

    def __call__(
        self, name: str, meta: NodeMeta, config: SwimConfig, rng: random.Random, *, epoch: int
    ) -> SwimProtocol: ...


class Simulator:
    """Virtual cluster. Build it, schedule faults, :meth:`run_until` a time, inspect."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        config: SwimConfig | None = None,
        net: NetConfig | None = None,
        bootstrap: bool = True,
        aligned: bool = False,
        record_trace: bool = True,
        protocol_factory: ProtocolFactory = SwimProtocol,
        leave_grace: float = 3.0,
    ) -> None:
        self.seed = seed
        self.protocol_factory = protocol_factory
        self.leave_grace = leave_grace
        self.config = config or SwimConfig()
        self.net = net or NetConfig()
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: list[SimNode] = []
        self.by_address: dict[Address, SimNode] = {}
        self.trace: list[str] = []
        self.record_trace = record_trace
        self.listeners: list[EventListener] = []
        self.blocked: set[tuple[int, int]] = set()  # (from group, to group)
        self.delivered = 0
        self.dropped = 0
        self._heap: list[tuple[float, int, int, int, int, object]] = []
        self._seq = 0
        self._aligned = aligned
        for _ in range(n):
            self._new_node()
        if bootstrap:
            everyone = [
                (
                    node.name,
                    node.protocol.meta,
                    encode_name(node.name),
                    encode_meta(node.protocol.meta),
                )
                for node in self.nodes
            ]
            for node in self.nodes:
                node.protocol.bootstrap(everyone)
        for node in self.nodes:
            self._apply(node, node.protocol.start(0.0, phase=0.5 if aligned else None))

    # ------------------------------------------------------------------ construction

    @staticmethod
    def name_of(index: int) -> str:
        """Node names are short so that datagram sizes are representative."""
        return f"n{index}"

    @staticmethod
    def address_of(index: int) -> Address:
        """A unique IPv4 address per node (10.0.0.0/8), always port 7946."""
        return (f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}", 7946)

    def _protocol(self, index: int, gen: int) -> SwimProtocol:
        host, port = self.address_of(index)
        meta = NodeMeta(host, port, port + 1000)
        rng = random.Random(self.seed * 1_000_003 + index * 7_919 + gen * 104_729)
        return self.protocol_factory(self.name_of(index), meta, self.config, rng, epoch=gen)

    def _new_node(self) -> SimNode:
        index = len(self.nodes)
        node = SimNode(index, self.name_of(index), self.address_of(index), self._protocol(index, 0))
        self.nodes.append(node)
        self.by_address[node.address] = node
        return node

    def add_node(self, seeds: Iterable[int]) -> SimNode:
        """A new node that joins through the nodes ``seeds`` (by index), now."""
        node = self._new_node()
        self._apply(node, node.protocol.start(self.now))
        self._apply(node, node.protocol.join([self.nodes[i].address for i in seeds], self.now))
        return node

    # ------------------------------------------------------------------ faults

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``when``."""
        self._push(when, _ACTION, 0, 0, action)

    def crash(self, index: int) -> None:
        """Stop node ``index`` now; its pending timers become stale."""
        node = self.nodes[index]
        node.running = False
        node.gen += 1
        self._log(f"crash {node.name}")

    def restart(self, index: int, seeds: Iterable[int]) -> None:
        """Bring node ``index`` back, fresh, on the same address; it joins via ``seeds``."""
        node = self.nodes[index]
        node.gen += 1
        node.running = True
        node.stalled_until = 0.0
        node.protocol = self._protocol(index, node.gen)
        self._log(f"restart {node.name}")
        self._apply(node, node.protocol.start(self.now))
        others = [self.nodes[i].address for i in seeds if i != index]
        self._apply(node, node.protocol.join(others, self.now))

    def leave(self, index: int) -> None:
        """Node ``index`` leaves gracefully now and stops ``leave_grace`` seconds later."""
        node = self.nodes[index]
        if not node.running:
            return
        self._log(f"leave {node.name}")
        self._apply(node, node.protocol.leave(self.now))
        gen = node.gen

        def stop() -> None:
            if node.running and node.gen == gen:  # not crashed or restarted meanwhile
                node.running = False
                node.gen += 1
                self._log(f"left {node.name}")

        self.at(self.now + self.leave_grace, stop)

    def stall(self, index: int, duration: float) -> None:
        """Node ``index`` processes nothing for ``duration`` seconds from now."""
        node = self.nodes[index]
        node.stalled_until = max(node.stalled_until, self.now + duration)
        self._log(f"stall {node.name} {duration:.3f}")

    def partition(self, groups: Iterable[Iterable[int]], *, symmetric: bool = True) -> None:
        """Put the nodes of each group in their own group 1, 2, ...; block group 1 → others
        (and back, if ``symmetric``). Group 0 (unlisted nodes) stays connected to everyone."""
        group_ids: list[int] = []
        for gid, members in enumerate(groups, start=1):
            group_ids.append(gid)
            for i in members:
                self.nodes[i].group = gid
        for a in group_ids:
            for b in group_ids:
                if a != b and (symmetric or a < b):
                    self.blocked.add((a, b))
        self._log(f"partition {sorted(self.blocked)}")

    def heal(self) -> None:
        """Remove every partition."""
        self.blocked.clear()
        for node in self.nodes:
            node.group = 0
        self._log("heal")

    def update_metadata(self, index: int, directory_version: int) -> None:
        """Node ``index`` advertises a new agent-directory version (an update to spread)."""
        node = self.nodes[index]
        old = node.protocol.meta
        meta = NodeMeta(old.host, old.port, old.data_port, old.public_key, directory_version)
        self._apply(node, node.protocol.update_metadata(meta, self.now))

    # ------------------------------------------------------------------ running

    def run_until(self, end: float) -> None:
        """Process every event up to virtual time ``end``."""
        heap = self._heap
        pop = heapq.heappop
        nodes = self.nodes
        while heap and heap[0][0] <= end:
            when, _, kind, index, gen, payload = pop(heap)
            self.now = when
            if kind == _ACTION:
                cast(Callable[[], None], payload)()
                continue
            node = nodes[index]
            if not node.running or (kind == _TIMER and gen != node.gen):
                if kind == _DELIVER:
                    self.dropped += 1
                continue
            if node.stalled_until > when:
                self._push(node.stalled_until, kind, index, gen, payload)
                continue
            if kind == _DELIVER:
                packet = cast(tuple[bytes, Address], payload)
                self.delivered += 1
                fx = node.protocol.handle_datagram(packet[0], packet[1], when)
            else:
                fx = node.protocol.handle_timer(cast(TimerToken, payload), when)
            if fx.datagrams or fx.timers or fx.events:
                self._apply(node, fx)
        self.now = max(self.now, end)

    def _push(self, when: float, kind: int, index: int, gen: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, index, gen, payload))

    def _apply(self, node: SimNode, fx: Effects) -> None:
        now = self.now
        push = self._push
        for token, deadline in fx.timers:
            push(deadline, _TIMER, node.index, node.gen, token)
        if fx.datagrams:
            self._transmit(node, fx.datagrams)
        if fx.events:
            for event in fx.events:
                if self.record_trace:
                    m = event.member
                    kind = event.kind.value if event.kind else "resync"
                    self.trace.append(f"{now:.6f} {node.name} {kind} {m.name} {m.incarnation}")
                for listener in self.listeners:
                    listener(now, node, event)

    def _transmit(self, node: SimNode, datagrams: list[tuple[Address, bytes]]) -> None:
        net = self.net
        rnd = self.rng.random
        blocked = self.blocked
        for addr, data in datagrams:
            dest = self.by_address.get(addr)
            if dest is None or (net.loss and rnd() < net.loss):
                self.dropped += 1
                continue
            if blocked and (node.group, dest.group) in blocked:
                self.dropped += 1
                continue
            delay = net.delay + net.jitter * rnd()
            if net.reorder and rnd() < net.reorder:
                delay += net.reorder_delay
            payload = (data, node.address)
            self._push(self.now + delay, _DELIVER, dest.index, 0, payload)
            if net.duplicate and rnd() < net.duplicate:
                self._push(self.now + delay + net.jitter * rnd(), _DELIVER, dest.index, 0, payload)

    def note(self, text: str) -> None:
        """Add ``text`` to the trace at the current virtual time (a test's own marks)."""
        self._log(text)

    def _log(self, text: str) -> None:
        if self.record_trace:
            self.trace.append(f"{self.now:.6f} * {text}")

    # ------------------------------------------------------------------ inspection

    def running_nodes(self) -> list[SimNode]:
        """Nodes that are up (stalled ones included)."""
        return [node for node in self.nodes if node.running]

    def view(self, index: int) -> dict[str, MemberState]:
        """Node ``index``'s view: member name -> state (itself included)."""
        return {m.name: m.state for m in self.nodes[index].protocol.members()}

    def converged(self) -> bool:
        """True if every running node sees exactly the running nodes as alive, none suspect."""
        expected = {node.name for node in self.nodes if node.running}
        for node in self.nodes:
            if not node.running:
                continue
            proto = node.protocol
            live = set(proto.live_names())
            live.add(node.name)
            if live != expected:
                return False
            if any(proto.state_of(name) is not MemberState.ALIVE for name in live):
                return False
        return True

    def trace_bytes(self) -> bytes:
        """The event trace as bytes, for byte-identity checks."""
        return "\n".join(self.trace).encode()
