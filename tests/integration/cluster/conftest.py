"""Fixtures of the cross-node tests: p2p nodes on 127.0.0.1 with free ports and fast SWIM,
and the agents the tests put on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_util import AsyncValue

from jarvis_trio.agent import Agent, CustomAgent
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.peers.messages import IncomingMessage

# SWIM at a 100 ms period (probe timeout 50 ms): the protocol of the LAN profile, 10x faster.
FAST_SWIM = {"swim_period": 0.1, "swim_probe_timeout": 0.05}
# SWIM at its LAN timings, for tests that kill no node and need none declared dead: on a loaded
# machine a 50 ms probe timeout can have a live node declared dead (a false death that has
# nothing to do with what such a test is about), a 500 ms one does not.
LAN_SWIM = {"swim_period": 1.0, "swim_probe_timeout": 0.5}
KEY = "a-cluster-secret-of-32-characters"


class Echo(CustomAgent):
    """Answers requests with what it got and who sent it; records notifications."""

    role = "echo"
    capabilities = ["echo", "math"]
    description = "answers every request with its payload"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.notes: list[IncomingMessage] = []
        self.noted = AsyncValue(0)

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("fail"):
            raise RuntimeError("asked to fail")
        if message.data.get("hang"):
            await trio.sleep_forever()
        return {
            "echo": message.data,
            "context": message.context,
            "sender": message.sender,
            "sender_node": message.sender_node,
        }

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        self.notes.append(message)
        self.noted.value += 1


class Manual(CustomAgent):
    """Serves its inbox by hand: ``receive()`` + ``respond()`` (the seed's pattern)."""

    role = "manual"
    capabilities = ["manual"]

    async def run(self) -> None:
        while True:
            message = await self.peers.receive()
            if message is not None and message.is_request:
                await self.peers.respond(message, {"handled_by": self.agent_id})


class Caller(CustomAgent):
    """A caller whose loop ends at once: the test drives its PeerClient."""

    role = "caller"

    async def run(self) -> None:
        return None


NodeFactory = Callable[..., AbstractAsyncContextManager[Mesh]]


def cluster_of(mesh: Mesh) -> ClusterNode:
    """The cross-node layer of a running p2p mesh."""
    route = mesh.router.remote
    assert isinstance(route, ClusterNode)
    return route


def seed_of(mesh: Mesh) -> str:
    """``host:port`` of a running node's SWIM socket, to use as a seed."""
    host, port = cluster_of(mesh).swim.address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def node_config(tmp_path: Path, name: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_host": "127.0.0.1",
        "bind_port": 0,
        "node_name": name,
        "blob_storage_path": str(tmp_path / f"blob-{name}"),
        **FAST_SWIM,
    }
    config.update(extra)
    return config


@pytest.fixture
def start_node(tmp_path: Path) -> NodeFactory:
    """``async with start_node("a", agents=[Echo], seed_nodes=..., ...) as mesh``."""

    @asynccontextmanager
    async def factory(
        name: str, agents: Sequence[type[Agent] | Agent] = (), **extra: Any
    ) -> AsyncIterator[Mesh]:
        config = node_config(tmp_path, name, **extra)
        async with open_mesh(config, agents=agents, env_file=None, environ={}) as mesh:
            yield mesh

    return factory


async def wait_discoverable(mesh: Mesh, *, nodes: int | None = None, agents: int) -> None:
    """Wait until ``mesh`` sees ``agents`` remote agents (and ``nodes`` live peers)."""
    cluster = cluster_of(mesh)
    directory = mesh.directory

    def ready() -> bool:
        remote = sum(1 for info in directory.matching() if info.location == "remote")
        return remote == agents and (nodes is None or len(cluster.live_nodes()) == nodes)

    await cluster.wait_until(ready)
