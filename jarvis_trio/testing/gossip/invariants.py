"""Named invariants of a gossip membership protocol, checked over a simulated cluster.

Each invariant watches the membership events of every node (:meth:`Invariant.on_event`) and
the faults applied (:meth:`Invariant.on_step`); it says what is wrong during the run
(:meth:`Invariant.check`, after every step) or once the faults have stopped and the cluster was
given time to settle (:meth:`Invariant.final`). A message names the nodes and the virtual time.

Pick them (``checks = (EventualConvergence(), NoFalseDeath(loss_bound=0.05))`` on a
:class:`~jarvis_trio.testing.gossip.GossipMachine`) or extend
them: subclass :class:`Invariant`, keep your state in :meth:`Invariant.reset`.
"""

from __future__ import annotations

from typing import Protocol

from ...swim.config import SwimConfig
from ...swim.lifeguard import suspicion_bounds
from ...swim.members import EventKind, MembershipEvent, MemberState
from ...swim.sim import NetConfig, SimNode, Simulator
from .schedule import Crash, Heal, Join, Leave, Network, Partition, Restart, Stall, Step


class Scenario(Protocol):
    """What an invariant sees of the run (:class:`~jarvis_trio.testing.gossip.Scenario`)."""

    @property
    def sim(self) -> Simulator: ...
    @property
    def config(self) -> SwimConfig: ...
    @property
    def bound(self) -> float:
        """Seconds within which a crash should be known everywhere (:func:`crash_bound`)."""
        ...

    @property
    def settled_for(self) -> float:
        """Seconds the cluster was given to settle after the faults stopped."""
        ...

    def node_named(self, name: str) -> SimNode | None: ...


__all__ = [
    "CrashDetected",
    "EventualConvergence",
    "Invariant",
    "NoFalseDeath",
    "NoResurrection",
    "Refutation",
    "crash_bound",
    "default_invariants",
]


def version(event: MembershipEvent) -> tuple[int, int]:
    """The (epoch, incarnation) an event is about: records order by it."""
    return (event.member.epoch, event.member.incarnation)


def own_version(node: SimNode) -> tuple[int, int]:
    """The (epoch, incarnation) a node holds of itself now."""
    me = node.protocol.local_member
    return (me.epoch, me.incarnation)


def crash_bound(config: SwimConfig, nodes: int) -> float:
    """Seconds within which a crash should be known everywhere: the longest suspicion timeout
    (Lifeguard's maximum, no confirmation) plus 16 protocol periods for the failed probes, the
    final check and dissemination."""
    low, high = suspicion_bounds(
        config.suspicion_mult, config.suspicion_max_mult, nodes, config.period
    )
    return (high if config.lifeguard else low) + 16 * config.period


class Invariant:
    """Base class: a named property with hooks; every hook does nothing by default."""

    name = "invariant"

    def reset(self, scenario: Scenario) -> None:
        """Start of a run: (re)initialise the invariant's own state."""

    def on_step(self, scenario: Scenario, step: Step, target: SimNode | None) -> None:
        """``step`` was just applied (``target``: the node it touched, if any)."""

    def on_event(
        self, scenario: Scenario, now: float, observer: SimNode, event: MembershipEvent
    ) -> None:
        """``observer`` emitted ``event`` at virtual time ``now``."""

    def check(self, scenario: Scenario) -> str | None:
        """After every step: what is wrong, or ``None``."""
        return None

    def final(self, scenario: Scenario) -> str | None:
        """After the faults stopped and the cluster settled: what is wrong, or ``None``."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EventualConvergence(Invariant):
    """Once the faults stop (partitions healed, a clean network), every running node sees
    exactly the running nodes alive, none suspect, within ``within`` seconds."""

    name = "eventual convergence"

    def __init__(self, within: float | None = None) -> None:
        self.within = within

    def final(self, scenario: Scenario) -> str | None:
        if scenario.sim.converged():
            return None
        sim = scenario.sim
        wrong = []
        expected = {n.name for n in sim.running_nodes()}
        for node in sim.running_nodes():
            live = set(node.protocol.live_names()) | {node.name}
            if live != expected:
                missing = sorted(expected - live)
                extra = sorted(live - expected)
                wrong.append(f"{node.name} misses {missing} and has {extra}")
            else:
                suspects = [m for m in live if node.protocol.state_of(m) is MemberState.SUSPECT]
                if suspects:
                    wrong.append(f"{node.name} suspects {suspects}")
        return (
            f"no convergence {scenario.settled_for:.0f} s after the faults stopped: "
            + "; ".join(wrong[:5])
        )


class NoFalseDeath(Invariant):
    """No running node is declared dead while the network is within the bound: loss at most
    ``loss_bound``, one-way latency within a quarter of the probe timeout, no partition, and
    neither node disturbed (stalled, just joined or restarted, or just healed from a
    partition or a worse network: the disturbance lasts ``grace`` seconds, by default the
    crash bound)."""

    name = "no false death"

    def __init__(self, loss_bound: float = 0.1, grace: float | None = None) -> None:
        self.loss_bound = loss_bound
        self.grace = grace

    def reset(self, scenario: Scenario) -> None:
        self._grace = self.grace if self.grace is not None else scenario.bound
        self._disturbed: dict[int, float] = {}
        self._everyone_until = -1.0
        self._noisy = not self._quiet(scenario.sim.net, scenario.config)
        self.deaths: list[str] = []

    def _quiet(self, net: NetConfig, config: SwimConfig) -> bool:
        latency = net.delay + net.jitter + (net.reorder_delay if net.reorder else 0.0)
        return net.loss <= self.loss_bound and latency <= config.probe_timeout / 4

    def on_step(self, scenario: Scenario, step: Step, target: SimNode | None) -> None:
        now = scenario.sim.now
        if isinstance(step, Network):
            quiet = self._quiet(step.net(), scenario.config)
            if self._noisy and quiet:
                self._everyone_until = now + self._grace
            self._noisy = not quiet
        elif isinstance(step, Heal | Partition):
            self._everyone_until = now + self._grace
        elif target is not None and isinstance(step, Stall):
            self._disturbed[target.index] = now + step.seconds + self._grace
        elif target is not None and isinstance(step, Restart | Join):
            self._disturbed[target.index] = now + self._grace

    def _excused(self, scenario: Scenario, node: SimNode, now: float) -> bool:
        return self._disturbed.get(node.index, -1.0) >= now

    def on_event(
        self, scenario: Scenario, now: float, observer: SimNode, event: MembershipEvent
    ) -> None:
        if event.kind is not EventKind.DEAD:
            return
        subject = scenario.node_named(event.member.name)
        if subject is None or not subject.running:
            return
        if self._noisy or scenario.sim.blocked or now <= self._everyone_until:
            return
        if self._excused(scenario, subject, now) or self._excused(scenario, observer, now):
            return
        if own_version(subject) <= version(event):
            self.deaths.append(f"{now:.3f} {observer.name} declared live {subject.name} dead")

    def check(self, scenario: Scenario) -> str | None:
        if self.deaths:
            return f"live nodes declared dead (loss <= {self.loss_bound:g}): " + "; ".join(
                self.deaths[:5]
            )
        return None

    def __repr__(self) -> str:
        return f"NoFalseDeath(loss_bound={self.loss_bound!r})"


class CrashDetected(Invariant):
    """A crashed node is dead (or gone) at every running node within ``bound`` seconds of its
    crash (by default :func:`crash_bound`), unless a partition or a lossy network
    (``loss > loss_bound``) got in the way meanwhile."""

    name = "crash detected everywhere within the bound"

    def __init__(self, bound: float | None = None, loss_bound: float = 0.1) -> None:
        self.bound = bound
        self.loss_bound = loss_bound

    def reset(self, scenario: Scenario) -> None:
        self._bound = self.bound if self.bound is not None else scenario.bound
        self._crashed: dict[int, float] = {}  # node index -> when the clock started
        self._lossy = False

    def on_step(self, scenario: Scenario, step: Step, target: SimNode | None) -> None:
        now = scenario.sim.now
        if isinstance(step, Crash) and target is not None:
            self._crashed[target.index] = now
        elif isinstance(step, Restart) and target is not None:
            self._crashed.pop(target.index, None)
        elif isinstance(step, Network):
            self._lossy = step.loss > self.loss_bound
            if self._lossy:
                self._restart_clocks(now)
        elif isinstance(step, Partition | Heal):
            self._restart_clocks(now)

    def _restart_clocks(self, now: float) -> None:
        for index in self._crashed:
            self._crashed[index] = max(self._crashed[index], now)

    def check(self, scenario: Scenario) -> str | None:
        sim = scenario.sim
        if sim.blocked or self._lossy:
            return None
        for index, since in self._crashed.items():
            if sim.now - since < self._bound:
                continue
            name = sim.nodes[index].name
            for node in sim.running_nodes():
                state = node.protocol.state_of(name)
                if state in (MemberState.ALIVE, MemberState.SUSPECT):
                    return (
                        f"{node.name} still sees {name} as {state.name.lower()} "
                        f"{sim.now - since:.1f} s after it crashed (bound {self._bound:.1f} s)"
                    )
        return None

    def __repr__(self) -> str:
        return f"CrashDetected(bound={self.bound!r}, loss_bound={self.loss_bound!r})"


class Refutation(Invariant):
    """Every suspicion of a live node is refuted: by the end, a running node that a still
    running node suspected holds a newer record of itself (a higher incarnation, or a new
    life) than the one it was suspected at. A suspicion whose holder crashed needs none."""

    name = "refutation"

    def reset(self, scenario: Scenario) -> None:
        # (observer, its life, subject) -> newest (epoch, incarnation) suspected
        self._suspected: dict[tuple[str, int, str], tuple[int, int]] = {}

    def on_event(
        self, scenario: Scenario, now: float, observer: SimNode, event: MembershipEvent
    ) -> None:
        if event.kind is EventKind.SUSPECT:
            key = (observer.name, observer.gen, event.member.name)
            self._suspected[key] = max(self._suspected.get(key, (-1, -1)), version(event))

    def final(self, scenario: Scenario) -> str | None:
        for (observer, o_gen, subject), suspected in self._suspected.items():
            o, s = scenario.node_named(observer), scenario.node_named(subject)
            if o is None or s is None or not (o.running and s.running) or o.gen != o_gen:
                continue
            if own_version(s) <= suspected:
                return (
                    f"{subject} was suspected by {observer} at (epoch, incarnation) "
                    f"{suspected} and never refuted (still at {own_version(s)})"
                )
        return None


class NoResurrection(Invariant):
    """A node that saw a member leave never sees that member alive again in the same life
    (no ghost revived by stale gossip after the *left* record was reaped)."""

    name = "no resurrection of a left member"

    def reset(self, scenario: Scenario) -> None:
        self._left: dict[str, tuple[int, int]] = {}  # member -> version it left at
        self._seen: set[tuple[str, str]] = set()  # (observer, member) that saw it leave
        self.ghosts: list[str] = []

    def on_step(self, scenario: Scenario, step: Step, target: SimNode | None) -> None:
        if target is None:
            return
        if isinstance(step, Leave):
            self._left[target.name] = own_version(target)
        elif isinstance(step, Restart | Crash):
            name = target.name  # a new life of the member, or of the observer
            self._left.pop(name, None)
            self._seen = {(o, m) for o, m in self._seen if name not in (o, m)}

    def on_event(
        self, scenario: Scenario, now: float, observer: SimNode, event: MembershipEvent
    ) -> None:
        member = event.member.name
        if member not in self._left:
            return
        key = (observer.name, member)
        if event.kind is EventKind.LEFT:
            self._seen.add(key)
        elif (
            key in self._seen
            and event.kind in (EventKind.JOIN, EventKind.ALIVE)
            and version(event) <= self._left[member]
        ):
            self.ghosts.append(f"{now:.3f} {observer.name} revived {member}")

    def check(self, scenario: Scenario) -> str | None:
        return "left members revived: " + "; ".join(self.ghosts[:5]) if self.ghosts else None


def default_invariants(loss_bound: float = 0.1) -> tuple[Invariant, ...]:
    """All five, with ``loss_bound`` for the two that depend on the network."""
    return (
        EventualConvergence(),
        NoFalseDeath(loss_bound=loss_bound),
        CrashDetected(loss_bound=loss_bound),
        Refutation(),
        NoResurrection(),
    )
