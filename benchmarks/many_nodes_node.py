"""One node of the many-node benchmark (``bench_many_nodes``), in its own OS process.

``python -m benchmarks.many_nodes_node --name NAME --expect N [--seed HOST:PORT]
[--period S] [--workers K]`` starts a p2p node with ``K`` ``worker`` agents (they answer every
request with its payload and count notifications), one ``hang`` agent (it never answers, so
requests to it stay pending until their node is known dead) and one ``caller`` (which sends
this node's share of the load). It prints ``READY <swim port> <wall time>``, then
``CONVERGED <wall time>`` as soon as its directory holds ``N`` agents (every agent of every
node), then reads commands from stdin, one per line:

* ``LOAD <seconds> <seed>``: requests and notifications, half each, from 4 concurrent senders
  to workers of random other nodes; answers ``LOADED <json>`` (counts, latencies in µs);
* ``PEND <node> ...``: one request (timeout 120 s) to the ``hang`` agent of each named node,
  left waiting; answers ``OK`` once every one is in flight;
* ``HOLD <n>``: answers ``OK`` once the ``hang`` agent holds ``n`` requests;
* ``REPORT``: answers ``REPORT <json>``: when (wall time) each named node left this node's
  live set and when its pending request returned, and every member this node declared dead or
  left (with the time) since it started.

End of input stops the node. Times are ``time.time()`` so that the runner can compare
processes; the machine is one host, so they share one clock.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import trio
import trio_util

from jarvis_trio.agent import CustomAgent
from jarvis_trio.bench.questions._agents import Caller
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.peers.messages import IncomingMessage
from jarvis_trio.swim import MemberState

_SENDERS = 4


class Worker(CustomAgent):
    role = "worker"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.notified = 0

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        return message.data

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        self.notified += 1


class Hang(CustomAgent):
    role = "hang"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.held = trio_util.AsyncValue(0)

    async def on_peer_request(self, message: IncomingMessage) -> None:
        # No reply: the requester waits until it learns that this node is gone.
        self.held.value += 1


class _State:
    def __init__(self, mesh: Mesh, cluster: ClusterNode) -> None:
        self.mesh = mesh
        self.cluster = cluster
        self.caller = next(a for a in mesh.agents if isinstance(a, Caller))
        self.hang = next(a for a in mesh.agents if isinstance(a, Hang))
        self.evicted: dict[str, float] = {}
        self.failed: dict[str, float] = {}
        self.deaths: list[tuple[str, str, float]] = []  # (member, state, wall time)

    async def watch_members(self) -> None:
        async with self.cluster.swim.subscribe(maxlen=4096) as events:
            async for event in events:
                member = event.member
                if member.state in (MemberState.DEAD, MemberState.LEFT):
                    self.deaths.append((member.name, member.state.name, time.time()))

    async def watch_eviction(self, node: str) -> None:
        await self.cluster.wait_until(lambda: node not in self.cluster.live_nodes())
        self.evicted[node] = time.time()

    async def pend(self, node: str) -> None:
        hang = [p for p in self.mesh.directory.matching(role="hang") if p.node_id == node]
        if not hang:
            self.failed[node] = -1.0
            return
        await self.caller.peers.request(hang[0].agent_id, {"wait": True}, timeout=120)
        self.failed[node] = time.time()

    async def load(self, seconds: float, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        me = self.mesh.node_id
        targets = [
            p.agent_id for p in self.mesh.directory.matching(role="worker") if p.node_id != me
        ]
        latencies: list[float] = []
        counts = {"requests": 0, "failed": 0, "notifies": 0, "refused": 0}
        peers = self.caller.peers
        deadline = time.perf_counter() + seconds

        async def sender(index: int) -> None:
            local = random.Random(rng.random() + index)
            while time.perf_counter() < deadline:
                target = local.choice(targets)
                if local.random() < 0.5:
                    t0 = time.perf_counter_ns()
                    reply = await peers.request(target, {"n": index}, timeout=5)
                    latencies.append((time.perf_counter_ns() - t0) / 1000)
                    counts["requests"] += 1
                    counts["failed"] += reply is None
                else:
                    counts["notifies"] += 1
                    counts["refused"] += not await peers.notify(target, {"n": index})

        async with trio.open_nursery() as nursery:
            for index in range(_SENDERS):
                nursery.start_soon(sender, index)
        latencies.sort()

        def pick(q: float) -> float:
            return latencies[int(q * (len(latencies) - 1))] if latencies else 0.0

        return {**counts, "p50_us": pick(0.5), "p99_us": pick(0.99)}


async def main(args: argparse.Namespace) -> None:
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_port": 0,
        "node_name": args.name,
        "seed_nodes": args.seed or "",
        "swim_period": args.period,
        "swim_probe_timeout": args.period / 2,
    }
    agents: list[type[CustomAgent]] = [*([Worker] * args.workers), Hang, Caller]
    async with open_mesh(config, agents=agents, env_file=None, environ={}) as mesh:
        cluster = mesh.router.remote
        assert isinstance(cluster, ClusterNode)
        state = _State(mesh, cluster)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(state.watch_members)
            print(f"READY {cluster.swim.address[1]} {time.time():.6f}", flush=True)
            await cluster.wait_until(lambda: len(mesh.directory) + 1 >= args.expect)
            print(f"CONVERGED {time.time():.6f}", flush=True)
            async for line in trio.wrap_file(sys.stdin):
                words = line.split()
                if words[:1] == ["LOAD"]:
                    figures = await state.load(float(words[1]), int(words[2]))
                    print(f"LOADED {json.dumps(figures)}", flush=True)
                elif words[:1] == ["PEND"]:
                    for node in words[1:]:
                        nursery.start_soon(state.watch_eviction, node)
                        nursery.start_soon(state.pend, node)
                    print("OK", flush=True)
                elif words[:1] == ["HOLD"]:
                    await state.hang.held.wait_value(lambda v, n=int(words[1]): v >= n)
                    print("OK", flush=True)
                elif words[:1] == ["REPORT"]:
                    report = {
                        "evicted": state.evicted,
                        "failed": state.failed,
                        "deaths": state.deaths,
                        "stats": cluster.stats(),
                    }
                    print(f"REPORT {json.dumps(report)}", flush=True)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--seed")
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=3)
    trio.run(main, parser.parse_args())
