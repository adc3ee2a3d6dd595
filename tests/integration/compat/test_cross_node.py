"""Two p2p nodes (SWIM + ZeroMQ on 127.0.0.1) in one asyncio program, through the shim.

Both meshes share the loop's one Trio runtime thread. Requests cross the asyncio/Trio boundary
and then the network; cancelling the asyncio caller cancels the remote request's pending entry.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage

from .conftest import run_main

FAST_SWIM = {"swim_period": 0.1, "swim_probe_timeout": 0.05}

entered = threading.Event()


class RemoteEcho(CustomAgent):
    role = "echo"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("hang"):
            entered.set()
            await trio.sleep_forever()
        return {"echo": message.data, "sender_node": message.sender_node}


class Caller(CustomAgent):
    role = "caller"


def _config(tmp_path: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "p2p_enabled": True,
        "bind_host": "127.0.0.1",
        "bind_port": 0,
        "node_name": name,
        "blob_storage_path": str(tmp_path / f"blob-{name}"),
        "stop_grace_period": 0.2,  # the hanging handler is cut short at stop
        **FAST_SWIM,
        **extra,
    }


def _seed_of(mesh: Mesh) -> str:
    route = mesh.router.remote
    assert isinstance(route, ClusterNode)
    host, port = route.swim.address[:2]
    return f"{host}:{port}"


async def _wait_remote_agents(mesh: Mesh, count: int) -> None:
    route = mesh.router.remote
    assert isinstance(route, ClusterNode)

    def ready() -> bool:
        return sum(1 for i in mesh.directory.matching() if i.location == "remote") == count

    with trio.fail_after(10):
        await route.wait_until(ready)


@pytest.mark.timeout(60)
def test_two_nodes_in_one_asyncio_program(tmp_path: Path) -> None:
    entered.clear()

    async def main() -> None:
        node_a = Mesh(config=_config(tmp_path, "node-a"), env_file=None, environ={})
        node_a.add(RemoteEcho)
        await node_a.start()
        host = node_a._host_slot.host
        seed = host.run_sync(_seed_of, node_a)
        node_b = Mesh(
            config=_config(tmp_path, "node-b", seed_nodes=seed), env_file=None, environ={}
        )
        caller = node_b.add(Caller)
        await node_b.start()
        try:
            assert node_b._host_slot.host is host
            await host.call(_wait_remote_agents, node_b, 1)
            assert [p["location"] for p in host.run_sync(caller.peers.list_peers)] == ["remote"]

            reply = await caller.peers.request("echo", {"x": 1}, timeout=5)
            assert reply == {"echo": {"x": 1}, "sender_node": "node-b"}

            task = asyncio.create_task(caller.peers.request("echo", {"hang": True}, timeout=30))
            assert await asyncio.to_thread(entered.wait, 10)
            assert host.run_sync(len, node_b.router.pending) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert host.run_sync(len, node_b.router.pending) == 0
        finally:
            await node_b.stop()
            assert host.running  # node_a still uses it
            await node_a.stop()
        assert host.stopped

    run_main("asyncio", main)
