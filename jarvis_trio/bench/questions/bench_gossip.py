"""The property-testing kit: how long does a full run of the ready state machine take?

Question (target from the issue): the public kit runs 100 examples x 25 steps of a 16-node
cluster (the LAN profile, all five invariants, every kind of fault) in ≤ 30 s. Quick mode runs
10 examples and projects the time of 100 from them. Both wall time and this process's CPU
time are given: on a shared machine the CPU time is the figure that does not depend on what
else runs.
"""

from __future__ import annotations

import time

from jarvis_trio.bench.results import Result, step

TARGET = 30.0


def _run(examples: int) -> tuple[float, float]:
    from hypothesis.stateful import run_state_machine_as_test

    from jarvis_trio.testing.gossip.machine import GossipMachine, gossip_settings

    class Cluster16(GossipMachine):
        nodes = 16

    wall, cpu = time.perf_counter(), time.process_time()
    run_state_machine_as_test(
        Cluster16,
        settings=gossip_settings(max_examples=examples, steps=25, derandomize=True, database=None),
    )
    return time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool) -> list[Result]:
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        return [
            Result(
                "gossip kit: 100 examples x 25 steps, 16 nodes",
                float("nan"),
                "s",
                f"<= {TARGET:g} s",
                False,
                "hypothesis is not installed: pip install 'jarvis_trio[testing]'",
            )
        ]
    examples = 10 if quick else 100
    step(f"{examples} examples x 25 steps of a 16-node cluster")
    wall, cpu = _run(examples)
    scale = 100 / examples
    projected = cpu * scale
    return [
        Result(
            "gossip kit: 100 examples x 25 steps, 16 nodes (CPU)",
            projected,
            "s",
            f"<= {TARGET:g} s",
            projected <= TARGET,
            f"{examples} examples: {wall:.1f} s wall, {cpu:.1f} s CPU"
            + (" (projected to 100)" if scale != 1 else ""),
        )
    ]
