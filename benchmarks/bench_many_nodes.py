"""Many real nodes: 32 OS processes on loopback, each a p2p node with a few agents.

Each node is ``benchmarks.many_nodes_node`` (3 ``worker`` agents, a ``hang`` agent and a
``caller``); node 0 is the seed the others join through. The questions, in order:

1. **join**: every node is started at once; how long after the *last* one is up does the
   *last* one see every agent of every node (its directory is complete)?
2. **idle**: CPU (user + system, from ``/proc/<pid>/stat``) per node over an idle window,
   and resident memory per node (``VmRSS``);
3. **load**: every node's caller sends requests and notifications, half each, from 4
   concurrent senders to workers of random other nodes for a few seconds;
4. **failure**: every survivor leaves a request waiting on the ``hang`` agent of each of 4
   victims; the victims are SIGKILLed; how long until every survivor has evicted each victim
   (dropped its agents, the moment its pending requests fail) -- next to the simulator's
   crash -> dead time for the same N and period -- and did any survivor declare another
   survivor dead (a false death)?

Bounded in time: every wait has a deadline, and every process is killed at the end.
``python -m benchmarks.bench_many_nodes [--quick] [--nodes N] [--period S]`` prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks._harness import Result, format_table, machine, median, percentile
from jarvis_trio.config import MeshConfig
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import EventKind, MembershipEvent
from jarvis_trio.swim.sim import SimNode, Simulator

_WORKERS = 3
_AGENTS_PER_NODE = _WORKERS + 2  # + hang + caller
_VICTIMS = 4


def victims_for(n: int) -> int:
    """4 victims, or fewer in a small cluster (at most a third of it)."""
    return max(1, min(_VICTIMS, n // 3))


_TICKS = os.sysconf("SC_CLK_TCK")


class _Node:
    """One node process, driven line by line; every read has a deadline."""

    def __init__(self, index: int, expect: int, period: float, seed: str | None) -> None:
        self.name = f"n{index:02d}"
        args = [
            sys.executable,
            "-m",
            "benchmarks.many_nodes_node",
            "--name",
            self.name,
            "--expect",
            str(expect),
            "--period",
            str(period),
            "--workers",
            str(_WORKERS),
        ]
        if seed:
            args += ["--seed", seed]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.alive = True

    def expect(self, prefix: str, deadline: float) -> str:
        """The next line, which must start with ``prefix``, read before ``deadline``."""
        assert self.proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if not line:
            raise TimeoutError(f"{self.name}: no {prefix} line in time")
        if not line[0].startswith(prefix):
            raise RuntimeError(f"{self.name} said {line[0]!r}, expected {prefix}")
        return line[0][len(prefix) :].strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.alive = False


def _each(nodes: list[_Node], fn: Callable[[_Node], Any]) -> list[Any]:
    return [fn(node) for node in nodes]


def _crash_listener(
    crashed_at: dict[str, float], delays: list[float]
) -> Callable[[float, SimNode, MembershipEvent], None]:
    def on_event(now: float, _node: SimNode, event: MembershipEvent) -> None:
        if event.kind is EventKind.DEAD and event.member.name in crashed_at:
            delays.append(now - crashed_at[event.member.name])

    return on_event


def simulate(n: int, period: float, runs: int, seed: int = 32) -> list[float]:
    """Seconds from crash to DEAD at every survivor, for :func:`victims_for` simultaneous crashes
    in the simulator with the node's own SWIM configuration for ``period``."""
    config = SwimConfig.from_mesh(
        MeshConfig.load({"swim_period": period, "swim_probe_timeout": period / 2})
    )
    delays: list[float] = []
    for run in range(runs):
        sim = Simulator(n, seed=seed + run, config=config, record_trace=False)
        crashed_at: dict[str, float] = {}

        sim.listeners.append(_crash_listener(crashed_at, delays))
        sim.run_until(20 * period)
        rng = random.Random(seed + run)
        for victim in rng.sample(range(n), victims_for(n)):
            crashed_at[sim.nodes[victim].name] = sim.now
            sim.crash(victim)
        sim.run_until(sim.now + 120 * period)
    return delays


def measure(n: int, period: float, idle_s: float, load_s: float, seed: int = 7) -> dict[str, Any]:
    """One run of the four questions; every process is gone when it returns."""
    expect = n * _AGENTS_PER_NODE
    budget = time.monotonic() + 120 + 60 * period
    nodes: list[_Node] = []
    out: dict[str, Any] = {}
    try:
        first = _Node(0, expect, period, None)
        nodes.append(first)
        seed_port, seed_ready = first.expect("READY", budget).split()
        nodes += [_Node(i, expect, period, f"127.0.0.1:{seed_port}") for i in range(1, n)]
        ready = [float(seed_ready)]
        for node in nodes[1:]:
            ready.append(float(node.expect("READY", budget).split()[1]))
        converged = _each(nodes, lambda node: float(node.expect("CONVERGED", budget)))
        out["join_s"] = max(converged) - max(ready)
        out["start_spread_s"] = max(ready) - min(ready)

        # idle: nothing but SWIM traffic
        before = _each(nodes, _Node.cpu_seconds)
        t0 = time.monotonic()
        deadline = t0 + idle_s
        while (now := time.monotonic()) < deadline:
            time.sleep(deadline - now)
        elapsed = time.monotonic() - t0
        after = _each(nodes, _Node.cpu_seconds)
        cpu = [(b - a) / elapsed * 100 for a, b in zip(before, after, strict=True)]
        out["idle_cpu_median_pct"] = median(cpu)
        out["idle_cpu_max_pct"] = max(cpu)
        rss = _each(nodes, _Node.rss_mb)
        out["rss_median_mb"] = median(rss)
        out["rss_max_mb"] = max(rss)

        # mixed load across random pairs
        for i, node in enumerate(nodes):
            node.send(f"LOAD {load_s} {seed * 1000 + i}")
        loaded = _each(nodes, lambda node: json.loads(node.expect("LOADED", budget)))
        out["load_requests"] = sum(f["requests"] for f in loaded)
        out["load_failed"] = sum(f["failed"] + f["refused"] for f in loaded)
        out["load_notifies"] = sum(f["notifies"] for f in loaded)
        out["load_rate"] = (out["load_requests"] + out["load_notifies"]) / load_s
        out["load_p50_us"] = median([f["p50_us"] for f in loaded])
        out["load_p99_us"] = max(f["p99_us"] for f in loaded)

        # SIGKILL 4 nodes with requests pending on them
        rng = random.Random(seed)
        victims = rng.sample(nodes[1:], victims_for(n))
        survivors = [node for node in nodes if node not in victims]
        names = " ".join(v.name for v in victims)
        for node in survivors:
            node.send(f"PEND {names}")
        _each(survivors, lambda node: node.expect("OK", budget))
        for victim in victims:
            victim.send(f"HOLD {len(survivors)}")
        _each(victims, lambda node: node.expect("OK", budget))
        killed_at = time.time()
        for victim in victims:
            victim.kill()
        victim_names = {v.name for v in victims}
        detect_deadline = time.monotonic() + 120 * period + 10
        reports: dict[str, dict[str, Any]] = {}
        pending = list(survivors)
        while pending and time.monotonic() < detect_deadline:
            time.sleep(period)  # the runner samples; the nodes themselves never poll
            still = []
            for node in pending:
                node.send("REPORT")
                report = json.loads(node.expect("REPORT", budget))
                reports[node.name] = report
                if set(report["evicted"]) < victim_names or set(report["failed"]) < victim_names:
                    still.append(node)
            pending = still
        evicted = [t - killed_at for r in reports.values() for t in r["evicted"].values()]
        failed = [t - killed_at for r in reports.values() for t in r["failed"].values() if t > 0]
        out["unfinished"] = len(pending)
        out["evicted_max_s"] = max(evicted) if evicted else float("inf")
        out["evicted_median_s"] = median(evicted) if evicted else float("inf")
        out["failed_max_s"] = max(failed) if failed else float("inf")
        out["failed_count"] = len(failed)
        out["pairs"] = len(survivors) * len(victims)
        out["false_deaths"] = sum(
            1 for r in reports.values() for name, _, _ in r["deaths"] if name not in victim_names
        )
        return out
    finally:
        for node in nodes:
            if node.proc.stdin is not None and node.alive:
                with contextlib.suppress(OSError):
                    node.proc.stdin.close()
        stop_by = time.monotonic() + 10
        for node in nodes:
            try:
                node.proc.wait(timeout=max(0.1, stop_by - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.kill()


def run(quick: bool, n: int = 32, period: float | None = None) -> list[Result]:
    """Answer the many-node questions (see the module docstring)."""
    period = period if period is not None else 1.0
    figures = measure(n, period, idle_s=5.0 if quick else 15.0, load_s=3.0 if quick else 10.0)
    sim = simulate(n, period, runs=5 if quick else 20)
    sim_p99, sim_median = percentile(sim, 99), median(sim)
    bound = sim_p99 + 2.0
    evicted_ok = figures["unfinished"] == 0 and figures["evicted_max_s"] <= bound
    failed_ok = figures["failed_count"] == figures["pairs"] and figures["failed_max_s"] <= bound
    note = f"N={n}, period {period} s, {_WORKERS + 2} agents per node"
    return [
        Result(
            f"{n} nodes: last start -> every directory complete",
            figures["join_s"],
            "s",
            "<= 5",
            figures["join_s"] <= 5.0,
            f"{note}; starts spread over {figures['start_spread_s']:.1f} s",
        ),
        Result(
            f"{n} nodes: idle CPU per node",
            figures["idle_cpu_median_pct"],
            "% core",
            "<= 1 (max)",
            figures["idle_cpu_max_pct"] <= 1.0,
            f"max {figures['idle_cpu_max_pct']:.2f} %",
        ),
        Result(
            f"{n} nodes: RSS per node",
            figures["rss_median_mb"],
            "MB",
            "<= 60 (max)",
            figures["rss_max_mb"] <= 60.0,
            f"max {figures['rss_max_mb']:.1f} MB",
        ),
        Result(
            f"{n} nodes: mixed load, random pairs",
            figures["load_rate"],
            "msg/s",
            "0 failed",
            figures["load_failed"] == 0,
            f"{figures['load_requests']} requests, {figures['load_notifies']} notifies, "
            f"{figures['load_failed']} failed; request p50 {figures['load_p50_us']:.0f} µs "
            f"(median node), p99 {figures['load_p99_us']:.0f} µs (worst node)",
        ),
        Result(
            f"{n} nodes: SIGKILL {victims_for(n)} -> evicted by every survivor",
            figures["evicted_max_s"],
            "s",
            f"<= sim p99 + 2 = {bound:.1f}",
            evicted_ok,
            f"median {figures['evicted_median_s']:.1f} s; simulator median {sim_median:.1f} s, "
            f"p99 {sim_p99:.1f} s ({len(sim)} crash x survivor pairs)",
        ),
        Result(
            f"{n} nodes: pending requests to the dead failed",
            figures["failed_max_s"],
            "s",
            f"<= {bound:.1f}, all",
            failed_ok,
            f"{figures['failed_count']} of {figures['pairs']} failed (the rest still waiting)",
        ),
        Result(
            f"{n} nodes: false deaths among survivors",
            figures["false_deaths"],
            "",
            "0",
            figures["false_deaths"] == 0,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nodes", type=int, default=32)
    parser.add_argument("--period", type=float)
    args = parser.parse_args()
    results = run(args.quick, args.nodes, args.period)
    print(f"machine: {machine()}")
    print(format_table(results))


if __name__ == "__main__":
    main()
