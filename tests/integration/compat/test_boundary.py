"""Cancellation, errors and lifecycle across the asyncio/Trio boundary, with a real Mesh."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sniffio
import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.errors import AsyncioMisuseError, HostStopped, MeshError, PayloadError
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage

from .conftest import BACKENDS, run_main


class Gate:
    """A handler gate the test opens from its own side: the handler parks on it in Trio."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.event: trio.Event | None = None

    async def wait(self) -> None:
        self.event = trio.Event()
        self.entered.set()
        await self.event.wait()

    def open(self) -> None:
        assert self.event is not None
        self.event.set()


GATE = Gate()


class SlowAgent(CustomAgent):
    role = "slow"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("wait"):
            await GATE.wait()
        return {"answer": message.data.get("n")}


class AsyncioUser(CustomAgent):
    """Agent code written for asyncio: it must be told what to use instead."""

    role = "asyncio-user"

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"never": True}


class Caller(CustomAgent):
    role = "caller"


def _mesh() -> Mesh:
    return Mesh(config={"p2p_enabled": False}, env_file=None, environ={})


async def _started_with_closed_gate() -> tuple[Mesh, Caller]:
    """A started mesh of a SlowAgent and a Caller, with a fresh (closed) gate."""
    global GATE
    GATE = Gate()
    mesh = _mesh()
    mesh.add(SlowAgent)
    caller = mesh.add(Caller)
    await mesh.start()
    return mesh, caller


def test_cancelled_asyncio_request_leaves_no_pending_entry() -> None:
    async def main() -> None:
        mesh, caller = await _started_with_closed_gate()
        host = mesh._host_slot.host
        try:
            task = asyncio.create_task(caller.peers.request("slow", {"wait": True, "n": 1}))
            assert await asyncio.to_thread(GATE.entered.wait, 5)
            assert host.run_sync(len, mesh.router.pending) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # CancelledError arrives only once the Trio side has unwound.
            assert host.run_sync(len, mesh.router.pending) == 0
            host.run_sync(GATE.open)
            # In arrival order: the late reply to the cancelled request goes out first.
            assert await caller.peers.request("slow", {"n": 2}, timeout=5) == {"answer": 2}
            assert host.run_sync(lambda: mesh.late_replies) == 1
            assert host.run_sync(len, mesh.router.pending) == 0
        finally:
            await mesh.stop()

    run_main("asyncio", main)


def test_asyncio_timeout_around_a_request_cancels_it_on_trio() -> None:
    async def main() -> None:
        mesh, caller = await _started_with_closed_gate()
        host = mesh._host_slot.host
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await caller.peers.request("slow", {"wait": True, "n": 1})
            assert host.run_sync(len, mesh.router.pending) == 0
            host.run_sync(GATE.open)
        finally:
            await mesh.stop()

    run_main("asyncio", main)


def test_many_asyncio_requests_some_cancelled_leave_nothing_behind() -> None:
    async def main() -> None:
        mesh, caller = await _started_with_closed_gate()
        host = mesh._host_slot.host
        try:
            tasks = [
                asyncio.create_task(caller.peers.request("slow", {"n": n}, timeout=5))
                for n in range(300)
            ]
            await asyncio.sleep(0)  # one loop turn: each task has posted its request, so every
            # cancel below crosses to the Trio side (some in the batch of their own start)
            for n in range(0, 300, 3):
                tasks[n].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for n, result in enumerate(results):
                if n % 3 == 0:
                    assert isinstance(result, asyncio.CancelledError)
                else:
                    assert result == {"answer": n}
            assert host.run_sync(len, mesh.router.pending) == 0
            assert host.run_sync(lambda: mesh.late_replies) <= 100
        finally:
            await mesh.stop()

    run_main("asyncio", main)


def test_an_asyncio_request_waiting_when_the_mesh_stops_returns_none() -> None:
    async def main() -> None:
        global GATE
        GATE = Gate()
        mesh = Mesh(
            config={"p2p_enabled": False, "stop_grace_period": 0.1}, env_file=None, environ={}
        )
        mesh.add(SlowAgent)
        caller = mesh.add(Caller)
        await mesh.start()
        waiting = asyncio.create_task(caller.peers.request("slow", {"wait": True, "n": 1}))
        assert await asyncio.to_thread(GATE.entered.wait, 5)
        await mesh.stop()
        assert await waiting is None

    run_main("asyncio", main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_keep_their_type(backend: str) -> None:
    async def main() -> None:
        mesh = _mesh()
        caller = mesh.add(Caller)
        mesh.add(SlowAgent)
        await mesh.start()
        try:
            with pytest.raises(PayloadError, match=r"\$\.when"):
                await caller.peers.request("slow", {"when": object()})
            with pytest.raises(ValueError):
                await caller.peers.ask_async("nobody", {"q": 1})
            with pytest.raises(MeshError, match="starts once"):
                await mesh.start()
            assert await caller.peers.request("slow", {"n": 3}) == {"answer": 3}
        finally:
            await mesh.stop()
        await mesh.stop()  # idempotent from either side

    run_main(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_agent_code_awaiting_asyncio_is_told_what_to_use(backend: str) -> None:
    # The README's promise holds on both faces: hosted from asyncio and under a plain
    # trio.run, where asyncio.sleep alone would fail with "no running event loop".
    async def main() -> dict[str, Any] | None:
        mesh = _mesh()
        mesh.add(AsyncioUser)
        caller = mesh.add(Caller)
        await mesh.start()
        try:
            return await caller.peers.request("asyncio-user", {"q": 1}, timeout=5)
        finally:
            await mesh.stop()

    reply = run_main(backend, main)
    # The handler's error travels back as the documented failure reply, naming the fix.
    assert reply is not None and reply["status"] == "failure"
    assert reply["error_type"] == AsyncioMisuseError.__name__
    assert "anyio.sleep" in reply["error"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_with_mesh_and_calls_after_stop(backend: str) -> None:
    async def main() -> None:
        async with _mesh() as mesh:
            caller = mesh.add(Caller)
            mesh.add(SlowAgent)
            if backend == "asyncio":
                host = mesh._host_slot.host
                assert host.running
                # add() after start ran on the Trio thread.
                assert host.run_sync(sniffio.current_async_library) == "trio"
            late = await mesh.start_agent(SlowAgent, agent_id="slow-late")
            assert late.agent_id == "slow-late"
            assert await caller.peers.request("slow-late", {"n": 5}, timeout=5) == {"answer": 5}
        if backend == "asyncio":
            assert host.stopped
            with pytest.raises(HostStopped):
                await caller.peers.request("slow", {"n": 6})

    run_main(backend, main)


def test_run_forever_returns_when_another_task_stops_the_mesh() -> None:
    async def main() -> None:
        mesh = _mesh()
        mesh.add(SlowAgent)
        await mesh.start()
        forever = asyncio.create_task(mesh.run_forever())
        await asyncio.sleep(0)  # one loop turn: the task has started and waits
        assert not forever.done()
        await mesh.stop()
        await forever

    run_main("asyncio", main)


class BrokenSetup(CustomAgent):
    role = "broken"

    async def setup(self) -> None:
        raise LookupError("missing resource")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_start_raises_its_error_and_leaves_no_runtime_thread(backend: str) -> None:
    def runtime_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "jarvis-trio-runtime"]

    async def main() -> None:
        mesh = _mesh()
        mesh.add(BrokenSetup)
        with pytest.raises(LookupError, match="missing resource"):
            await mesh.start()
        assert mesh._host_slot.host is None
        assert runtime_threads() == []
        # As documented for stop(): it raises the error that stopped the node, on either side.
        with pytest.raises(LookupError, match="missing resource"):
            await mesh.stop()
        assert runtime_threads() == []

    run_main(backend, main)


def test_tasks_created_before_start_find_the_host_through_the_objects() -> None:
    async def main() -> None:
        mesh = _mesh()
        caller = mesh.add(Caller)
        mesh.add(SlowAgent)
        started = asyncio.Event()
        replies: list[Any] = []

        async def early_task() -> None:
            # Created before start(): this task's context has no current host, so the
            # PeerClient itself must carry it.
            await started.wait()
            replies.append(await caller.peers.request("slow", {"n": 7}, timeout=5))
            late = mesh.get_agent("slow-added-late")
            assert late is not None
            replies.append(await caller.peers.request(late.agent_id, {"n": 8}, timeout=5))

        task = asyncio.create_task(early_task())
        await mesh.start()
        await mesh.start_agent(SlowAgent, agent_id="slow-added-late")
        started.set()
        try:
            await task
        finally:
            await mesh.stop()
        assert replies == [{"answer": 7}, {"answer": 8}]

    run_main("asyncio", main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_program_runs_several_meshes_one_after_the_other(backend: str) -> None:
    async def main() -> list[Any]:
        answers = []
        for n in range(3):
            mesh = _mesh()
            caller = mesh.add(Caller)
            mesh.add(SlowAgent)
            await mesh.start()
            try:
                answers.append(await caller.peers.request("slow", {"n": n}, timeout=5))
            finally:
                await mesh.stop()
        return answers

    assert run_main(backend, main) == [{"answer": 0}, {"answer": 1}, {"answer": 2}]
