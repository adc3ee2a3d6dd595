"""``run_asyncio``: agent code awaits an asyncio-only library, from both hosts.

Hosted from asyncio, the library runs on the host program's own loop; under a native
``trio.run`` it runs on a loop the node owns (a thread that stops with the node). Cancellation
crosses both ways: a cancelled Trio caller cancels the asyncio task and waits until it unwound;
an asyncio task cancelled on its own side raises ``AsyncioCallCancelled`` in the Trio caller.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import trio

from jarvis_trio import AsyncioCallCancelled, CustomAgent, IncomingMessage, Mesh, run_asyncio

from .conftest import BACKENDS, LIMIT, run_main


class Library:
    """Stands for an asyncio-only client library: it needs a running asyncio loop."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def fetch(self, key: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()  # raises outside asyncio
        self.loops.append(loop)
        await asyncio.sleep(0.001)
        return {"key": key, "thread": threading.current_thread().name}

    async def hang(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def cancel_itself(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)


LIB = Library()


class Fetcher(CustomAgent):
    role = "fetcher"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("self_cancel"):
            try:
                await run_asyncio(LIB.cancel_itself)
            except AsyncioCallCancelled as exc:
                return {"error": type(exc).__name__}
        return await run_asyncio(LIB.fetch, message.data["key"])

    async def run(self, task: str, context: dict[str, Any]) -> None:  # a task that hangs
        await run_asyncio(LIB.hang)


class Caller(CustomAgent):
    role = "caller"

    async def run(self) -> None:
        return None


def _mesh() -> Mesh:
    mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
    mesh.add(Fetcher)
    return mesh


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_asyncio_from_agent_code(backend: str) -> None:
    LIB.loops.clear()

    async def main() -> dict[str, Any]:
        mesh = _mesh()
        caller = mesh.add(Caller)
        await mesh.start()
        try:
            reply = await caller.peers.request("fetcher", {"key": "k1"}, timeout=LIMIT)
            cancelled = await caller.peers.request("fetcher", {"self_cancel": True}, timeout=LIMIT)
        finally:
            await mesh.stop()
        host_loop = asyncio.get_running_loop() if backend == "asyncio" else None
        return {"reply": reply, "cancelled": cancelled, "host_loop": host_loop}

    outcome = run_main(backend, main)
    assert outcome["reply"]["key"] == "k1"
    assert outcome["cancelled"] == {"error": "AsyncioCallCancelled"}
    if backend == "asyncio":
        assert LIB.loops[0] is outcome["host_loop"]  # the host program's own loop
        assert outcome["reply"]["thread"] == "MainThread"
    else:
        assert outcome["reply"]["thread"].endswith("-asyncio")  # the node's own loop
        assert not [t for t in threading.enumerate() if t.name.endswith("-asyncio")]


def test_cancelling_the_asyncio_caller_cancels_the_library_call() -> None:
    LIB.cancelled.clear()

    async def main() -> None:
        mesh = _mesh()
        fetcher = mesh.get_agent("fetcher")
        assert fetcher is not None
        await mesh.start()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(fetcher.execute_task("hang", {}), 0.2)
            # the Trio side unwound before wait_for returned, and with it the library call
            assert LIB.cancelled.is_set()
        finally:
            await mesh.stop()

    run_main("asyncio", main)


async def test_cancelling_the_trio_caller_cancels_the_library_call() -> None:
    LIB.cancelled.clear()
    mesh = _mesh()
    fetcher = mesh.get_agent("fetcher")
    assert fetcher is not None
    async with mesh:
        with trio.fail_after(LIMIT):
            with trio.move_on_after(0.2) as scope:
                await fetcher.execute_task("hang", {})
            assert scope.cancelled_caught
            assert LIB.cancelled.is_set()  # unwound before the Trio caller went on
        assert (await run_asyncio(LIB.fetch, "from-test"))["key"] == "from-test"


async def test_run_asyncio_outside_a_running_mesh_says_so() -> None:
    with pytest.raises(RuntimeError, match="needs a running mesh"):
        await run_asyncio(LIB.fetch, "x")
    mesh = _mesh()
    async with mesh:
        with pytest.raises(TypeError, match="needs an async function"):
            await run_asyncio(lambda: 1)  # type: ignore[arg-type, return-value]


def test_a_program_ending_mid_call_cancels_the_library_call_and_stops_the_runtime() -> None:
    """``asyncio.run``'s main returns while an agent waits in run_asyncio(): the loop's
    shutdown cancels the library call, the Trio side unwinds and the runtime thread ends."""
    LIB.cancelled.clear()
    LIB.started.clear()

    async def main() -> None:
        mesh = _mesh()
        fetcher = mesh.get_agent("fetcher")
        assert fetcher is not None
        await mesh.start()
        asyncio.get_running_loop().create_task(fetcher.execute_task("hang", {}))
        await asyncio.to_thread(LIB.started.wait, LIMIT)
        # returns with the mesh running and the call in flight

    run_main("asyncio", main)
    assert LIB.cancelled.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("jarvis-trio-runtime")]


async def test_a_node_stopping_mid_call_shuts_its_loop_down_under_the_call() -> None:
    """Under trio.run the node's own loop stops with the node: a call still running on it is
    cancelled there, and its Trio caller learns so (AsyncioCallCancelled) instead of hanging."""
    LIB.cancelled.clear()
    LIB.started.clear()
    mesh = _mesh()
    fetcher = mesh.get_agent("fetcher")
    assert fetcher is not None
    raised: list[BaseException] = []

    async def hang() -> None:
        try:
            await fetcher.execute_task("hang", {})
        except Exception as exc:
            raised.append(exc)

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await mesh.start()
            nursery.start_soon(hang)
            await trio.to_thread.run_sync(LIB.started.wait, LIMIT)
            await mesh.stop()
    assert LIB.cancelled.is_set()
    assert [type(exc) for exc in raised] == [AsyncioCallCancelled]
    assert not [t for t in threading.enumerate() if t.name.endswith("-asyncio")]
