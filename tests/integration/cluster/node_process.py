"""A p2p node in its own OS process, driven by the cross-process tests over stdin/stdout.

``python node_process.py NAME [--seed HOST:PORT] [--bind-port N] [--data-port N] [--key K]``
starts a node with one ``echo`` agent and one caller, prints ``READY <swim port> <data port>
<echo agent id>``, then answers commands read from stdin, one per line:

* ``ASK <target>``: the caller requests ``{"from_process": NAME}`` from ``target`` and prints
  ``REPLY <json>`` (``REPLY null`` on no reply);
* ``PEERS``: prints ``PEERS <json list of list_peers()>``;
* ``WAIT <n>``: waits until ``n`` remote agents are known, then prints ``SEEN <n>``.

End of input stops the node gracefully (it leaves the cluster); ``kill -9`` is the crash.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import open_mesh
from jarvis_trio.peers.messages import IncomingMessage


class Echo(CustomAgent):
    role = "echo"
    capabilities = ["echo"]

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("hang"):
            await trio.sleep_forever()
        return {"echo": message.data, "sender_node": message.sender_node}


class Caller(CustomAgent):
    role = "caller"

    async def run(self) -> None:
        return None


async def main(args: argparse.Namespace) -> None:
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_host": "127.0.0.1",
        "bind_port": args.bind_port,
        "node_name": args.name,
        "seed_nodes": args.seed or "",
        "swim_period": 0.1,
        "swim_probe_timeout": 0.05,
        "blob_storage_path": args.blob,
    }
    if args.data_port:
        config["data_port"] = args.data_port
    if args.key:
        config["cluster_key"] = args.key
    async with open_mesh(config, agents=[Echo, Caller], env_file=None, environ={}) as mesh:
        cluster = mesh.router.remote
        assert isinstance(cluster, ClusterNode)
        echo, caller = mesh.agents
        port = cluster.swim.address[1]
        print(f"READY {port} {cluster.bridge.port} {echo.agent_id}", flush=True)
        stdin = trio.wrap_file(sys.stdin)
        async for line in stdin:
            words = line.split()
            if words[:1] == ["ASK"]:
                reply = await caller.peers.request(words[1], {"from_process": args.name}, timeout=5)
                print(f"REPLY {json.dumps(reply)}", flush=True)
            elif words[:1] == ["WAIT"]:
                wanted = int(words[1])
                directory = mesh.directory

                def seen(directory: Any = directory, wanted: int = wanted) -> bool:
                    return bool(sum(i.location == "remote" for i in directory.matching()) == wanted)

                await cluster.wait_until(seen)
                print(f"SEEN {wanted}", flush=True)
            elif words[:1] == ["PEERS"]:
                print(f"PEERS {json.dumps(caller.peers.list_peers())}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--seed")
    parser.add_argument("--bind-port", type=int, default=0)
    parser.add_argument("--data-port", type=int, default=0)
    parser.add_argument("--key")
    parser.add_argument("--blob", default="blob_storage")
    trio.run(main, parser.parse_args())
