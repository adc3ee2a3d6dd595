"""Fixtures of the core runtime tests: isolated meshes (no environment, no .env, blob storage
in a temporary folder) and a few agents shared by several modules."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from jarvis_trio.agent import CustomAgent
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.peers.messages import IncomingMessage

MeshFactory = Callable[..., AbstractAsyncContextManager[Mesh]]


class Echo(CustomAgent):
    """Replies with what it got, and who asked."""

    name = "Echo"
    role = "echo"
    capabilities = ["echo", "testing"]
    description = "answers every request with its payload"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        return {"echo": message.data, "from": message.sender}


class Idle(CustomAgent):
    """A caller: its run() returns at once, so its inbox is read only by the test."""

    role = "caller"

    async def run(self) -> None:
        return None


def mesh_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"node_name": "test-node", "blob_storage_path": str(tmp_path / "b")}
    config.update(extra)
    return config


@pytest.fixture
def seed() -> int:
    """A fixed seed, printed so a failure can be replayed."""
    value = 20261122
    print(f"random seed: {value}")
    return value


@pytest.fixture
def make_mesh(tmp_path: Path, seed: int) -> MeshFactory:
    """``async with make_mesh(**config) as mesh`` — an isolated node."""

    @asynccontextmanager
    async def factory(**extra: Any) -> AsyncIterator[Mesh]:
        options = {k: extra.pop(k) for k in list(extra) if k in _MESH_OPTIONS}
        options.setdefault("rng", random.Random(seed))
        async with open_mesh(
            mesh_config(tmp_path, **extra), env_file=None, environ={}, **options
        ) as mesh:
            yield mesh

    return factory


@pytest.fixture
def new_mesh(tmp_path: Path, seed: int) -> Callable[..., Mesh]:
    """``Mesh(config=...)`` in the documented, imperative form, isolated like ``make_mesh``."""

    def factory(**extra: Any) -> Mesh:
        options = {k: extra.pop(k) for k in list(extra) if k in _MESH_OPTIONS}
        options.setdefault("rng", random.Random(seed))
        return Mesh(mesh_config(tmp_path, **extra), env_file=None, environ={}, **options)

    return factory


@asynccontextmanager
async def full_inbox(make_mesh: MeshFactory) -> AsyncIterator[tuple[Mesh, Idle, Idle]]:
    """``async with full_inbox(make_mesh) as (mesh, sender, receiver)``: a node whose inboxes
    hold one message, the receiver's already taken by the sender's ``{"fill": True}``."""
    async with make_mesh(inbox_size=1) as mesh:
        sender = await mesh.start_agent(Idle)
        receiver = await mesh.start_agent(Idle)
        assert await sender.peers.notify(receiver.agent_id, {"fill": True})
        yield mesh, sender, receiver


_MESH_OPTIONS = {"restart_policy", "rng", "notify_timeout", "max_pending"}
