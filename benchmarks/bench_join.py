"""Joining: what does ``start()`` cost now that it returns joined?

A seed node runs in another OS process (``jarvis_trio.bench.questions.transport_node``: an
``echo`` and a ``sink`` agent). In this process, alternately, in the same run:

* a node with that seed: the time ``await mesh.start()`` takes, and the time until the seed's
  agents are discoverable (the same figure when ``start()`` returns joined, which is checked:
  a start that returns before the seed's ``echo`` is discoverable is counted as *early*);
* a lone node (p2p on, no seeds): the time ``await mesh.start()`` takes, which joining must
  not change.

And the bound the README states for later changes: an agent added to a running node, until
another node (in this process) discovers it, against one gossip round (0.2 x swim_period).
"""

from __future__ import annotations

import time
from typing import Any

import trio

from benchmarks._harness import Result, median
from jarvis_trio.agent import CustomAgent
from jarvis_trio.bench.questions.bench_transport import _PeerProcess
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import Mesh, open_mesh

_SWIM = {"swim_period": 0.2, "swim_probe_timeout": 0.1}
_GOSSIP_ROUND = 0.2 * _SWIM["swim_period"]


class _Caller(CustomAgent):
    role = "caller"

    async def run(self) -> None:
        return None


class _Late(CustomAgent):
    role = "late"


def _config(name: str, seed: str) -> dict[str, Any]:
    return {"p2p_enabled": True, "bind_port": 0, "node_name": name, "seed_nodes": seed, **_SWIM}


def _cluster(mesh: Mesh) -> ClusterNode:
    cluster = mesh.router.remote
    assert isinstance(cluster, ClusterNode)
    return cluster


async def _one_start(name: str, seed: str) -> tuple[float, float, bool]:
    """(start() seconds, seconds until the seed's echo is discoverable, joined at return)."""
    mesh = Mesh(_config(name, seed), env_file=None, environ={})
    mesh.add(_Caller)
    began = time.perf_counter()
    await mesh.start()
    started = time.perf_counter() - began
    try:
        joined = bool(mesh.directory.matching(role="echo")) if seed else True
        if not joined:
            with trio.fail_after(10):
                await _cluster(mesh).wait_until(lambda: bool(mesh.directory.matching(role="echo")))
        return started, time.perf_counter() - began, joined
    finally:
        await mesh.stop()


async def _added_agent(rounds: int) -> list[float]:
    """Seconds from ``start_agent`` on one node until another node discovers the agent."""
    seen: list[float] = []
    options: dict[str, Any] = {"env_file": None, "environ": {}}
    async with open_mesh(_config("holder", ""), **options) as holder:
        seed = f"127.0.0.1:{_cluster(holder).swim.address[1]}"
        async with open_mesh(_config("watcher", seed), **options) as watcher:
            for i in range(rounds):
                began = time.perf_counter()
                await holder.start_agent(_Late, agent_id=f"late-{i}")

                def arrived(count: int = i + 1) -> bool:
                    return len(watcher.directory.matching(role="late")) >= count

                with trio.fail_after(10):
                    await _cluster(watcher).wait_until(arrived)
                seen.append(time.perf_counter() - began)
    return seen


async def _figures(starts: int) -> dict[str, Any]:
    far = await trio.to_thread.run_sync(_PeerProcess, "transport_node")
    seed = f"127.0.0.1:{far.port}"
    seeded: list[float] = []
    discoverable: list[float] = []
    lone: list[float] = []
    early = 0
    try:
        for i in range(starts):  # interleaved, so that load on the machine hits both alike
            started, seen, joined = await _one_start(f"joiner-{i}", seed)
            seeded.append(started)
            discoverable.append(seen)
            early += not joined
            lone.append((await _one_start(f"lone-{i}", ""))[0])
    finally:
        await trio.to_thread.run_sync(far.close)
    added = await _added_agent(starts)
    return {
        "seeded": median(seeded),
        "discoverable": median(discoverable),
        "lone": median(lone),
        "early": early,
        "added": median(added),
        "added_max": max(added),
    }


def run(quick: bool) -> list[Result]:
    """Answer the joining questions (see the module docstring)."""
    starts = 5 if quick else 15
    figures = trio.run(_figures, starts)
    seeded, lone, added = figures["seeded"], figures["lone"], figures["added"]
    return [
        Result(
            "start() with one seed, returns with the seed's agents discoverable",
            seeded,
            "s",
            "<= 0.2, joined",
            seeded <= 0.2 and figures["early"] == 0,
            f"discoverable after {figures['discoverable']:.3f} s; "
            f"{figures['early']} of {starts} returned before",
        ),
        Result(
            "start() of a lone node (p2p on, no seeds)",
            lone,
            "s",
            "unchanged",
            True,
            f"seeded start is {seeded / lone:.1f}x the lone one",
        ),
        Result(
            "agent added to a running node -> discoverable on another",
            added,
            "s",
            f"<= one gossip round ({_GOSSIP_ROUND:g} s) + a fetch",
            added <= _GOSSIP_ROUND + 0.02,
            f"median of {starts}; max {figures['added_max']:.3f} s; "
            f"swim_period {_SWIM['swim_period']}",
        ),
    ]
