"""One property-test run: a simulated cluster, a fault schedule applied step by step, the
invariants checked after each step and once the faults stop; :func:`replay` runs it again.

The run is deterministic: the simulator draws every random choice from the seed, steps are
values, and invariants only observe. So ``replay(seed, schedule)`` with the schedule a failing
test printed produces the same trace, byte for byte (the failure message gives its SHA-256).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ...swim.config import SwimConfig
from ...swim.members import MembershipEvent
from ...swim.protocol import SwimProtocol
from ...swim.sim import NetConfig, ProtocolFactory, SimNode, Simulator
from .invariants import Invariant, crash_bound, default_invariants
from .schedule import Step, apply_step

__all__ = ["GossipViolation", "Outcome", "Scenario", "replay"]

WARM_UP = 3.0
"""Virtual seconds the cluster runs before the first step (every node has probed)."""


class GossipViolation(AssertionError):
    """An invariant does not hold. The message has the invariant, what is wrong, the seed,
    the schedule up to the failing step and the line that replays it."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run produced: its trace, and the violation if one was found."""

    trace: bytes
    violation: str | None
    steps_applied: int

    @property
    def digest(self) -> str:
        """SHA-256 of the trace (a replay must give the same)."""
        return hashlib.sha256(self.trace).hexdigest()


class Scenario:
    """A cluster of ``nodes`` simulated nodes under a schedule of faults."""

    def __init__(
        self,
        seed: int,
        *,
        nodes: int = 16,
        config: SwimConfig | None = None,
        invariants: Iterable[Invariant] | None = None,
        protocol_factory: ProtocolFactory = SwimProtocol,
        min_running: int = 3,
        max_nodes: int = 64,
        settle: float | None = None,
    ) -> None:
        self.seed = seed
        self.nodes = nodes
        self.config = config or SwimConfig()
        self.protocol_factory = protocol_factory
        self.min_running = min_running
        self.max_nodes = max_nodes
        self.bound = crash_bound(self.config, max(nodes, 2))
        self.settle = settle if settle is not None else 2 * self.bound
        self.settled_for = 0.0
        self.schedule: list[Step] = []
        self.violation: str | None = None
        prototypes = default_invariants() if invariants is None else tuple(invariants)
        self.invariants = [copy.deepcopy(inv) for inv in prototypes]
        self.sim = Simulator(
            nodes, seed=seed, config=self.config, protocol_factory=protocol_factory
        )
        self._by_name = {node.name: node for node in self.sim.nodes}
        self.sim.listeners.append(self._observe)
        for inv in self.invariants:
            inv.reset(self)
        self.sim.run_until(WARM_UP)

    def node_named(self, name: str) -> SimNode | None:
        """The simulated node called ``name`` (``None`` for a name no node has)."""
        node = self._by_name.get(name)
        if node is None and len(self._by_name) != len(self.sim.nodes):
            self._by_name = {n.name: n for n in self.sim.nodes}
            node = self._by_name.get(name)
        return node

    def _observe(self, now: float, observer: SimNode, event: MembershipEvent) -> None:
        for inv in self.invariants:
            inv.on_event(self, now, observer, event)

    def apply(self, step: Step) -> str | None:
        """Apply one step, then check every invariant; the first violation, or ``None``."""
        self.schedule.append(step)
        index = apply_step(self.sim, step, min_running=self.min_running, max_nodes=self.max_nodes)
        target = None if index is None else self.sim.nodes[index]
        for inv in self.invariants:
            inv.on_step(self, step, target)
        return self._judge(lambda inv: inv.check(self))

    def finish(self) -> str | None:
        """Stop the faults (heal, clean network), let the cluster settle (until it converges
        or ``settle`` seconds pass), then check every invariant's final word."""
        sim = self.sim
        sim.heal()
        sim.net = NetConfig()
        sim.note("faults stop")
        start = sim.now
        tick = 5 * self.config.period
        while sim.now - start < self.settle and not sim.converged():
            sim.run_until(sim.now + tick)
        sim.run_until(sim.now + tick)  # a last look: the view must stay converged
        self.settled_for = sim.now - start
        found = self._judge(lambda inv: inv.check(self))
        return found or self._judge(lambda inv: inv.final(self))

    def _judge(self, verdict: Callable[[Invariant], str | None]) -> str | None:
        if self.violation is not None:
            return self.violation
        for inv in self.invariants:
            problem = verdict(inv)
            if problem is not None:
                self.violation = f"[{inv.name}] {problem}"
                self.sim.note(f"violation {self.violation}")
                return self.violation
        return None

    def outcome(self) -> Outcome:
        """The trace and the verdict so far."""
        return Outcome(self.sim.trace_bytes(), self.violation, len(self.schedule))

    def report(self, replay_call: str = "replay") -> str:
        """The failure message: violation, seed, schedule, and how to replay it."""
        schedule = ",\n    ".join(repr(step) for step in self.schedule)
        return (
            f"{self.violation}\n"
            f"seed={self.seed} nodes={self.nodes} steps={len(self.schedule)} "
            f"virtual time={self.sim.now:.3f} s\n"
            f"replay it (trace sha256 {self.outcome().digest}):\n"
            f"  {replay_call}(seed={self.seed}, nodes={self.nodes}, schedule=[\n"
            f"    {schedule}\n  ])"
        )


def replay(
    seed: int,
    schedule: Sequence[Step],
    *,
    nodes: int = 16,
    config: SwimConfig | None = None,
    invariants: Iterable[Invariant] | None = None,
    protocol_factory: ProtocolFactory = SwimProtocol,
    min_running: int = 3,
    settle: float | None = None,
) -> Outcome:
    """Run ``schedule`` on a fresh cluster as the property test did: step by step with the
    invariants checked after each, stopping at the first violation; with none, the faults stop
    and the final checks run. Same arguments, same :class:`Outcome`, byte for byte."""
    scenario = Scenario(
        seed,
        nodes=nodes,
        config=config,
        invariants=invariants,
        protocol_factory=protocol_factory,
        min_running=min_running,
        settle=settle,
    )
    for step in schedule:
        if scenario.apply(step) is not None:
            return scenario.outcome()
    scenario.finish()
    return scenario.outcome()
