"""SWIM times its own probes: every acknowledged probe adds its ping-to-ack round trip to
``probe_rtt``, which ``/metrics`` exports as ``jarvis_swim_probe_rtt_seconds``."""

from __future__ import annotations

import pytest

from jarvis_trio.swim.protocol import PROBE_RTT_BUCKETS
from jarvis_trio.swim.sim import NetConfig, Simulator


def test_each_acked_probe_adds_its_round_trip() -> None:
    sim = Simulator(4, seed=3, net=NetConfig(delay=0.004, jitter=0.0))
    sim.run_until(20.0)
    for node in sim.nodes:
        protocol = node.protocol
        rtt = protocol.probe_rtt.as_dict()
        answered = protocol.probes - protocol.counters().get("probes_failed", 0)
        assert answered - 1 <= rtt["count"] <= answered  # the last probe may be in flight
        assert rtt["count"] > 10
        # 4 ms each way, no jitter: every round trip is 8 ms, in the (5 ms, 10 ms] bucket
        where = PROBE_RTT_BUCKETS.index(0.01)
        assert rtt["buckets"][where] == rtt["count"]
        assert rtt["sum"] == pytest.approx(0.008 * rtt["count"])


def test_unanswered_probes_add_nothing() -> None:
    sim = Simulator(3, seed=4, net=NetConfig(delay=0.004, jitter=0.0))
    sim.run_until(5.0)
    before = {node.name: node.protocol.probe_rtt.count for node in sim.nodes}
    sim.partition([[0], [1, 2]])
    sim.run_until(6.0)
    isolated = sim.nodes[0].protocol
    assert isolated.probe_rtt.count <= before[sim.nodes[0].name] + 1  # one ack in flight
