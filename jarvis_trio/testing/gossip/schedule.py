"""Fault schedules: the steps a property test applies to a simulated cluster, as values.

A schedule is a sequence of frozen steps. Their ``repr`` is the Python that builds them, so a
failing test prints a schedule that pastes straight into :func:`~jarvis_trio.testing.gossip.replay`.
Node numbers are taken modulo the cluster's current size when a step is applied, so that any
drawn schedule is valid for any cluster and shrinks freely; a step that cannot apply (crashing
a node that is down, restarting one that is up, bringing the cluster below ``min_running``) is
skipped, deterministically, and marked as skipped in the trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...swim.sim import NetConfig, Simulator

__all__ = [
    "Advance",
    "Crash",
    "Heal",
    "Join",
    "Leave",
    "Network",
    "Partition",
    "Restart",
    "Stall",
    "Step",
    "apply_step",
]


@dataclass(frozen=True, slots=True)
class Advance:
    """Let ``seconds`` of virtual time pass."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Network:
    """Change the network's behaviour from now on (see :class:`~jarvis_trio.swim.sim.NetConfig`)."""

    loss: float = 0.0
    delay: float = 0.001
    jitter: float = 0.001
    duplicate: float = 0.0
    reorder: float = 0.0

    def net(self) -> NetConfig:
        """The simulator's network configuration for this step."""
        return NetConfig(
            loss=self.loss,
            delay=self.delay,
            jitter=self.jitter,
            duplicate=self.duplicate,
            reorder=self.reorder,
        )


@dataclass(frozen=True, slots=True)
class Crash:
    """Node ``node`` stops without a word."""

    node: int


@dataclass(frozen=True, slots=True)
class Restart:
    """The ``node``-th crashed node comes back fresh (incarnation 0) and joins through every
    known address, as an operator listing several seeds would."""

    node: int


@dataclass(frozen=True, slots=True)
class Join:
    """A new node joins through every known address."""


@dataclass(frozen=True, slots=True)
class Leave:
    """Node ``node`` leaves gracefully."""

    node: int


@dataclass(frozen=True, slots=True)
class Stall:
    """Node ``node`` processes nothing for ``seconds`` (a GC pause, a starved CPU), then its
    whole backlog at once."""

    node: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Partition:
    """The running nodes, in order, are cut into two groups at ``cut`` (taken modulo, at
    least one node on each side); ``symmetric=False`` blocks only first → second."""

    cut: int
    symmetric: bool = True


@dataclass(frozen=True, slots=True)
class Heal:
    """Every partition ends."""


Step = Advance | Network | Crash | Restart | Join | Leave | Stall | Partition | Heal


def _pick(candidates: Sequence[int], index: int) -> int | None:
    return candidates[index % len(candidates)] if candidates else None


def apply_step(
    sim: Simulator, step: Step, *, min_running: int = 3, max_nodes: int = 64
) -> int | None:
    """Apply ``step`` to ``sim``; returns the node index it touched (``None`` for none).

    Skipped steps (see the module doc) leave the simulator as it was but for a trace line,
    so that a schedule replays identically whatever it contains.
    """
    running = [n.index for n in sim.nodes if n.running]
    down = [n.index for n in sim.nodes if not n.running]
    target: int | None = None
    match step:
        case Advance(seconds):
            sim.run_until(sim.now + seconds)
            return None
        case Network():
            sim.net = step.net()
            sim.note(f"network {step!r}")
            return None
        case Crash(node):
            target = _pick(running, node) if len(running) > min_running else None
            if target is not None:
                sim.crash(target)
        case Restart(node):
            target = _pick(down, node)
            if target is not None:
                sim.restart(target, range(len(sim.nodes)))
        case Join():
            if len(sim.nodes) < max_nodes:
                target = sim.add_node(range(len(sim.nodes))).index
        case Leave(node):
            target = _pick(running, node) if len(running) > min_running else None
            if target is not None:
                sim.leave(target)
        case Stall(node, seconds):
            target = _pick(running, node)
            if target is not None:
                sim.stall(target, seconds)
        case Partition(cut, symmetric):
            if len(running) >= 2 and not sim.blocked:
                at = 1 + cut % (len(running) - 1)
                sim.partition([running[:at], running[at:]], symmetric=symmetric)
                return None
        case Heal():
            if sim.blocked:
                sim.heal()
                return None
    if target is None:
        sim.note(f"skipped {step!r}")
    return target
