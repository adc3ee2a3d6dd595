"""Fixtures for running the documented API under asyncio and under Trio.

pytest-trio's ``trio_mode`` runs every ``async def`` test under Trio (and turns anyio's asyncio
runs into Trio runs), so these tests are plain ``def`` functions that call ``asyncio.run`` or
``trio.run`` themselves through :func:`run_main`, which also proves which library runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sniffio
import trio
import trio.testing

from jarvis_trio.testing.nexus_gateway import NexusGateway, serve_nexus_gateway

LIMIT = 20.0
"""Upper bound, in seconds, for one scenario."""

BACKENDS = ["asyncio", "trio"]


def prove_backend(backend: str) -> None:
    """Fail unless the calling coroutine really runs on ``backend``."""
    assert sniffio.current_async_library() == backend
    if backend == "asyncio":
        loop = asyncio.get_running_loop()
        assert type(loop).__module__.startswith("asyncio"), type(loop)
    else:
        trio.lowlevel.current_trio_token()
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()


class _LiveTasks(trio.abc.Instrument):
    """Tasks spawned since it was installed that have not exited yet."""

    def __init__(self) -> None:
        self.live: set[trio.lowlevel.Task] = set()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.live.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live.discard(task)


def run_main(backend: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` the way a user program would: ``asyncio.run`` or ``trio.run``.

    Under Trio it also checks that ``main`` leaked no task: once it returned and every other
    task is blocked, no task it spawned (directly or through the mesh) may remain. Under
    asyncio the whole Trio runtime has ended by then (its thread stops with the last mesh).
    """

    async def proved() -> Any:
        prove_backend(backend)
        return await main()

    if backend == "asyncio":

        async def bounded() -> Any:
            async with asyncio.timeout(LIMIT):
                return await proved()

        return asyncio.run(bounded())

    async def bounded_trio() -> Any:
        tasks = _LiveTasks()
        trio.lowlevel.add_instrument(tasks)
        try:
            with trio.fail_after(LIMIT):
                result = await proved()
                await trio.testing.wait_all_tasks_blocked()
        finally:
            trio.lowlevel.remove_instrument(tasks)
        assert not tasks.live, f"tasks left running: {sorted(t.name for t in tasks.live)}"
        return result

    return trio.run(bounded_trio)


@pytest.fixture
def nexus_gateway() -> Iterator[NexusGateway]:
    """A development Nexus gateway on loopback, in its own thread (usable from either
    backend); connections get consent on their first poll."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with serve_nexus_gateway(auto_consent_after=0) as gateway:
            box["gateway"] = gateway
            box["token"] = trio.lowlevel.current_trio_token()
            box["stop"] = stop = trio.Event()
            ready.set()
            await stop.wait()

    def runner() -> None:
        try:
            trio.run(serve)
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=runner, name="nexus-gateway", daemon=True)
    thread.start()
    assert ready.wait(10), "the development gateway did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["gateway"]
    finally:
        box["token"].run_sync_soon(box["stop"].set)
        thread.join(10)
