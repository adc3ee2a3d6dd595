"""Properties of the protocol, checked over the simulator.

Every randomized test derives everything from one seed and puts it in its failure message (the
hypothesis machines draw it, and hypothesis prints the drawn values of a failing example), so
any failure is reproducible with ``Simulator(..., seed=<seed>)``.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import EventKind, MembershipEvent, MemberState
from jarvis_trio.swim.sim import NetConfig, SimNode, Simulator

PROFILE = SwimConfig()  # the LAN profile, 1 s period


def run_faulty_scenario(seed: int) -> Simulator:
    sim = Simulator(
        12, seed=seed, net=NetConfig(loss=0.05, duplicate=0.02, reorder=0.05, jitter=0.005)
    )
    sim.at(5.0, lambda: sim.crash(3))
    sim.at(7.0, lambda: sim.stall(5, 3.0))
    sim.at(9.0, lambda: sim.partition([[0, 1, 2], [6, 7, 8, 9]], symmetric=False))
    sim.at(30.0, sim.heal)
    sim.at(35.0, lambda: sim.restart(3, [0]))
    sim.at(35.5, lambda: sim.crash(4))
    sim.at(36.0, lambda: sim.restart(4, [1]))
    sim.run_until(80.0)
    return sim


def test_same_seed_same_trace_byte_for_byte() -> None:
    first = run_faulty_scenario(1234).trace_bytes()
    second = run_faulty_scenario(1234).trace_bytes()
    assert first == second and len(first) > 1000, "seed 1234"
    assert run_faulty_scenario(4321).trace_bytes() != first


def test_two_way_partition_heals_without_an_operator() -> None:
    seed = 77
    sim = Simulator(16, seed=seed)
    left, right = list(range(8)), list(range(8, 16))
    sim.run_until(5.0)
    sim.partition([left, right])
    sim.run_until(95.0)  # long enough for each side to declare the other dead
    # dead by now, or even reaped: each side has given the other up
    assert sim.view(0).get("n12") in (MemberState.DEAD, None), f"seed {seed}"
    assert sim.view(12).get("n0") in (MemberState.DEAD, None), f"seed {seed}"
    assert sim.nodes[0].protocol.num_live() == 8 and sim.nodes[12].protocol.num_live() == 8
    sim.heal()
    healed_at = None
    for step in range(1, 61):
        sim.run_until(95.0 + step)
        if sim.converged():
            healed_at = step
            break
    assert healed_at is not None, f"seed {seed}: no merged view within 60 s"


def test_crash_detected_by_everyone_and_restart_rejoins() -> None:
    seed = 5
    sim = Simulator(32, seed=seed, net=NetConfig(loss=0.01))
    sim.run_until(10.0)
    sim.crash(7)
    sim.run_until(10.0 + 40.0)
    for node in sim.running_nodes():
        assert sim.view(node.index).get("n7") in (MemberState.DEAD, None), f"seed {seed}"
    sim.restart(7, [0])
    sim.run_until(70.0)
    assert sim.converged(), f"seed {seed}"
    assert sim.nodes[7].protocol.epoch > 0  # a new life: it outranks the old one at once
    assert sim.view(0)["n7"] is MemberState.ALIVE


class ClusterMachine(RuleBasedStateMachine):
    """Random joins, crashes, restarts, stalls, loss and partitions; then the faults stop.

    Invariants: no running node is ever declared dead while the network is only lossy
    (≤ 10 %) and unpartitioned and it is not stalled; a crashed node is dead at every running
    node within the bound; once faults stop, every running node converges to the same view,
    and every falsely suspected node has refuted (bumped its incarnation past the suspicion).
    """

    BOUND = 45.0  # crash -> dead everywhere at n <= 12: 1-2 periods + max suspicion (24 s) + gossip

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulator | None = None
        self.seed = 0
        self.crashed_at: dict[int, float] = {}
        self.disturbed_until: dict[int, float] = {}  # stalled or cut off, false deaths allowed
        self.partitioned_since: float | None = None
        self.false_deaths: list[str] = []
        # running node -> highest (epoch, incarnation) suspected: a suspicion of an earlier
        # life is outranked by the new life itself, which has nothing to refute
        self.suspicions: dict[str, tuple[int, int]] = {}

    @initialize(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 10))
    def start(self, seed: int, n: int) -> None:
        self.seed = seed
        self.sim = Simulator(n, seed=seed)
        self.sim.listeners.append(self._observe)
        self.sim.run_until(3.0)

    def _observe(self, now: float, observer: SimNode, event: MembershipEvent) -> None:
        assert self.sim is not None
        subject = next((n for n in self.sim.nodes if n.name == event.member.name), None)
        if subject is None or not subject.running:
            return
        if event.kind is EventKind.DEAD:
            quiet = (
                self.partitioned_since is None
                and self.disturbed_until.get(subject.index, -1.0) < now
                and self.disturbed_until.get(observer.index, -1.0) < now
            )
            current = (subject.protocol.epoch, subject.protocol.incarnation)
            if quiet and current <= (event.member.epoch, event.member.incarnation):
                self.false_deaths.append(f"{now:.1f} {observer.name} declared {subject.name}")
        if event.kind is EventKind.SUSPECT:
            ver = (event.member.epoch, event.member.incarnation)
            self.suspicions[subject.name] = max(self.suspicions.get(subject.name, (-1, -1)), ver)

    def _running(self) -> list[int]:
        assert self.sim is not None
        return [node.index for node in self.sim.nodes if node.running]

    @rule(seconds=st.floats(1.0, 15.0))
    def advance(self, seconds: float) -> None:
        assert self.sim is not None
        self.sim.run_until(self.sim.now + seconds)

    @rule(loss=st.sampled_from([0.0, 0.01, 0.05, 0.1]))
    def set_loss(self, loss: float) -> None:
        assert self.sim is not None
        self.sim.net = NetConfig(loss=loss, duplicate=0.01, reorder=0.02)

    @precondition(lambda self: len(self._running()) > 3)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        assert self.sim is not None
        index = data.draw(st.sampled_from(self._running()))
        self.sim.crash(index)
        self.crashed_at[index] = self.sim.now
        self.suspicions.pop(self.sim.nodes[index].name, None)

    @precondition(lambda self: bool(self.crashed_at))
    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        assert self.sim is not None
        index = data.draw(st.sampled_from(sorted(self.crashed_at)))
        del self.crashed_at[index]
        self.sim.restart(index, range(len(self.sim.nodes)))  # every address is a seed
        self.disturbed_until[index] = self.sim.now + 60.0  # its old incarnation may be buried

    @precondition(lambda self: self.sim is not None and len(self.sim.nodes) < 12)
    @rule()
    def join(self) -> None:
        assert self.sim is not None
        # Every address known so far is a seed (as an operator would list several): a node
        # whose only seed died before answering could never join, under any protocol.
        node = self.sim.add_node(range(len(self.sim.nodes)))
        self.disturbed_until[node.index] = self.sim.now + 30.0

    @rule(data=st.data(), seconds=st.floats(1.0, 5.0))
    def stall(self, data: st.DataObject, seconds: float) -> None:
        assert self.sim is not None
        index = data.draw(st.sampled_from(self._running()))
        self.sim.stall(index, seconds)
        self.disturbed_until[index] = self.sim.now + seconds + 30.0

    @precondition(lambda self: self.partitioned_since is None)
    @rule(data=st.data(), symmetric=st.booleans())
    def partition(self, data: st.DataObject, symmetric: bool) -> None:
        assert self.sim is not None
        running = self._running()
        cut = data.draw(st.integers(1, len(running) - 1))
        self.sim.partition([running[:cut], running[cut:]], symmetric=symmetric)
        self.partitioned_since = self.sim.now

    @precondition(lambda self: self.partitioned_since is not None)
    @rule()
    def heal(self) -> None:
        assert self.sim is not None
        self.sim.heal()
        self.partitioned_since = None
        for node in self.sim.nodes:  # whoever was cut off may have been declared dead
            self.disturbed_until[node.index] = self.sim.now + 90.0

    @invariant()
    def no_false_death_when_quiet(self) -> None:
        assert not self.false_deaths, f"seed {self.seed}: {self.false_deaths}"

    @invariant()
    def crashed_nodes_are_dead_within_the_bound(self) -> None:
        sim = self.sim
        if sim is None or self.partitioned_since is not None:
            return
        for index, when in self.crashed_at.items():
            if sim.now - when < self.BOUND:
                continue
            name = sim.nodes[index].name
            for node in sim.running_nodes():
                state = node.protocol.state_of(name)
                assert state in (None, MemberState.DEAD, MemberState.LEFT), (
                    f"seed {self.seed}: {node.name} still sees crashed {name} as {state}"
                )

    def teardown(self) -> None:
        sim = self.sim
        if sim is None:
            return
        sim.heal()
        sim.net = NetConfig()
        for _ in range(24):  # up to 240 s after the last fault
            sim.run_until(sim.now + 10.0)
            if sim.converged():
                break
        assert sim.converged(), f"seed {self.seed}: no convergence after faults stopped"
        for node in sim.running_nodes():
            suspected = self.suspicions.get(node.name)
            if suspected is not None:
                assert (node.protocol.epoch, node.protocol.incarnation) > suspected, (
                    f"seed {self.seed}: {node.name} was suspected at {suspected} and never refuted"
                )


ClusterMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=25, deadline=None, derandomize=True
)
TestCluster = ClusterMachine.TestCase
