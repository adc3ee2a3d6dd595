"""The far node of the cross-node benchmarks: a p2p mesh in its own OS process.

``python -m jarvis_trio.bench.questions.transport_node [--seed HOST:PORT]`` starts a node with
an ``echo`` agent (answers every request with its payload) and a ``sink`` agent (counts
notifications), prints ``READY <swim port> <echo id> <sink id>``, then reads commands from stdin:

* ``COUNT <n>``: reset the sink's count; print ``COUNTED <n> <seconds>`` once ``n``
  notifications arrived (seconds from the first to the last);
* ``STATS``: print the cross-node counters as one JSON line.

End of input stops the node.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.bench.questions._agents import Echo
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import open_mesh
from jarvis_trio.peers.messages import IncomingMessage

SWIM = {"swim_period": 0.2, "swim_probe_timeout": 0.1}


class Sink(CustomAgent):
    role = "sink"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.count = 0
        self.target = 0
        self.first = 0.0
        self.done = trio.Event()

    def expect(self, target: int) -> None:
        self.count, self.target, self.done = 0, target, trio.Event()

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
        self.count += 1
        if self.count == self.target:
            self.done.set()


async def main(seed: str | None) -> None:
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_port": 0,
        "node_name": "far",
        "seed_nodes": seed or "",
        "inbox_size": 4096,
        **SWIM,
    }
    async with open_mesh(config, agents=[Echo, Sink], env_file=None, environ={}) as mesh:
        cluster = mesh.router.remote
        assert isinstance(cluster, ClusterNode)
        echo, sink = mesh.agents
        assert isinstance(sink, Sink)
        print(f"READY {cluster.swim.address[1]} {echo.agent_id} {sink.agent_id}", flush=True)
        async for line in trio.wrap_file(sys.stdin):
            words = line.split()
            if words[:1] == ["COUNT"]:
                sink.expect(int(words[1]))
                print("OK", flush=True)
                await sink.done.wait()
                elapsed = time.perf_counter() - sink.first
                print(f"COUNTED {sink.count} {elapsed:.6f}", flush=True)
            elif words[:1] == ["STATS"]:
                print(json.dumps(cluster.stats()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed")
    trio.run(main, parser.parse_args().seed)
