"""Properties of the protocol, checked over the simulator.

Every randomized test derives everything from one seed and puts it in its failure message; the
state machine is the public kit's (:mod:`jarvis_trio.testing.gossip`), whose failures print the
seed and the shrunk schedule as a ``ClusterMachine.replay(...)`` call.
"""

from __future__ import annotations

from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import MemberState
from jarvis_trio.swim.sim import NetConfig, Simulator
from jarvis_trio.testing.gossip import GossipMachine, gossip_settings

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


class ClusterMachine(GossipMachine):
    """The LAN profile under random faults, through the public kit: joins, crashes, restarts,
    graceful leaves, stalls, loss, delay, duplication, reordering, symmetric and asymmetric
    partitions; all five named invariants (eventual convergence, no false death at up to 10 %
    loss, crash detected everywhere within the bound, refutation, no resurrection)."""

    nodes = 8


TestCluster = ClusterMachine.TestCase
TestCluster.settings = gossip_settings(max_examples=100, steps=25, derandomize=True)
