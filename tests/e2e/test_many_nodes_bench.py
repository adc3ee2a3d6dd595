"""The many-node benchmark's harness, at a size a test can afford: real node processes, a
real SIGKILL, and the figures it reports are the ones it measured."""

from __future__ import annotations

from benchmarks.bench_many_nodes import measure, simulate


def test_three_nodes_join_idle_load_and_evict_a_killed_one() -> None:
    figures = measure(3, period=0.5, idle_s=0.5, load_s=0.5)
    assert figures["join_s"] < 30
    assert 0 <= figures["idle_cpu_median_pct"] <= figures["idle_cpu_max_pct"]
    assert 10 < figures["rss_median_mb"] <= figures["rss_max_mb"]
    assert figures["load_requests"] > 0 and figures["load_notifies"] > 0
    assert figures["load_failed"] == 0
    # one victim, two survivors: each evicted it and saw its pending request fail
    assert figures["unfinished"] == 0
    assert figures["pairs"] == 2 and figures["failed_count"] == 2
    assert 0 < figures["evicted_max_s"] < 60
    assert figures["evicted_median_s"] <= figures["evicted_max_s"]


def test_the_simulator_prediction_is_per_survivor_and_victim() -> None:
    delays = simulate(6, period=0.5, runs=2)
    assert len(delays) == 2 * 2 * 4  # runs x victims x survivors
    assert all(0 < d < 60 for d in delays)
