"""start_hosted / stop_hosted on a small runtime object, from asyncio and from Trio.

``Toy`` stands in for the Mesh and crosses the seam the way it does: ``start``/``stop``/``async
with`` call the seam when awaited outside Trio, it hands its ``HostSlot`` to every object it
builds (a ``peers``-like object per agent), runs ``teardown()`` for each in ``stop()``, and has
``@trio_side`` and ``@trio_side_sync`` methods that only work on a Trio thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sniffio
import trio

from jarvis_trio import Agent, Mesh
from jarvis_trio._sides import HostSlot, current_host, on_trio, trio_side, trio_side_sync
from jarvis_trio.compat._hosted import start_hosted, stop_hosted
from jarvis_trio.compat._lifecycle import host_of_loop
from jarvis_trio.errors import AsyncioMisuseError, HostStopped


def _require_trio() -> int:
    assert sniffio.current_async_library() == "trio"
    trio.lowlevel.current_trio_token()  # raises off the Trio thread
    return threading.get_ident()


class ToyPeers:
    def __init__(self, host: HostSlot) -> None:
        self._host_slot = host

    @trio_side
    async def request(self, value: int) -> int:
        _require_trio()
        await trio.lowlevel.checkpoint()
        return value * 2


class ToyAgent:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.peers: ToyPeers | None = None

    async def teardown(self) -> None:
        _require_trio()
        await trio.lowlevel.checkpoint()
        self.log.append(f"teardown {self.name}")


class Toy:
    def __init__(self, *names: str, fail_start: bool = False) -> None:
        self.log: list[str] = []
        self.agents = [ToyAgent(n, self.log) for n in names]
        self.running = False
        self.fail_start = fail_start
        self._host_slot = HostSlot()

    async def start(self) -> None:
        if on_trio():
            await self._start()
        else:
            await start_hosted(self, self._start)

    async def _start(self) -> None:
        _require_trio()
        await trio.lowlevel.checkpoint()
        if self.fail_start:
            raise LookupError("start failed on the Trio side")
        for agent in self.agents:
            agent.peers = ToyPeers(self._host_slot)
        self.running = True

    async def stop(self) -> None:
        if on_trio():
            await self._stop()
        else:
            await stop_hosted(self, self._stop)

    async def _stop(self) -> None:
        _require_trio()
        if not self.running:
            return
        self.running = False
        for agent in self.agents:
            await agent.teardown()

    async def __aenter__(self) -> Toy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @trio_side
    async def ping(self) -> str:
        _require_trio()
        await trio.lowlevel.checkpoint()
        return "pong"

    @trio_side_sync
    def add(self, name: str) -> ToyAgent:
        thread = _require_trio() if self.running else threading.get_ident()
        agent = ToyAgent(name, self.log)
        agent.peers = ToyPeers(self._host_slot) if self.running else None
        self.agents.append(agent)
        self.log.append(
            f"add {name} on {'trio' if thread != threading.main_thread().ident else 'main'}"
        )
        return agent


def test_asyncio_start_hosts_the_object_and_what_it_injected(on_asyncio: Any) -> None:
    toy = Toy("a", "b")

    async def scenario() -> None:
        await toy.start()
        host = host_of_loop(asyncio.get_running_loop())
        assert host is not None and host.running
        assert current_host.get() is host
        assert toy._host_slot.host is host and toy._host_slot.leased
        for agent in toy.agents:
            assert agent.peers is not None
            assert agent.peers._host_slot is toy._host_slot
            assert await agent.peers.request(21) == 42
        assert await toy.ping() == "pong"
        await toy.stop()
        assert host.stopped
        assert current_host.get() is None
        with pytest.raises(HostStopped):  # the object itself names its stopped host
            await toy.agents[0].peers.request(1)  # type: ignore[union-attr]
        second = Toy("c")
        second.add("d")  # a new object of this task runs here until its own start()
        await second.start()
        assert second._host_slot.host is not host
        await second.stop()
        assert host_of_loop(asyncio.get_running_loop()) is None

    on_asyncio(scenario)
    assert toy.log == ["teardown a", "teardown b"]


def test_objects_are_found_from_tasks_that_do_not_share_the_context(on_asyncio: Any) -> None:
    toy = Toy("a")

    async def scenario() -> None:
        ready = asyncio.Event()
        results: list[int] = []

        async def other_task() -> None:
            await ready.wait()
            assert current_host.get() is None  # created before start: no context var
            peers = toy.agents[0].peers
            assert peers is not None
            results.append(await peers.request(5))

        task = asyncio.create_task(other_task())
        await toy.start()
        ready.set()
        await task
        await toy.stop()
        assert results == [10]

    on_asyncio(scenario)


def test_sync_methods_run_on_the_trio_thread_once_hosted(on_asyncio: Any) -> None:
    toy = Toy()

    async def scenario() -> None:
        toy.add("before")  # not hosted yet: runs right here
        await toy.start()
        late = toy.add("after")  # hosted: runs on the Trio thread, the caller blocks briefly
        assert late.peers is not None
        assert await late.peers.request(1) == 2  # built with the toy's slot
        await toy.stop()

    on_asyncio(scenario)
    assert toy.log[:2] == ["add before on main", "add after on trio"]


def test_two_objects_share_one_host_until_the_last_stops(on_asyncio: Any) -> None:
    first, second = Toy("x"), Toy("y")

    async def scenario() -> None:
        await asyncio.gather(first.start(), second.start())
        host = first._host_slot.host
        assert host is not None and second._host_slot.host is host
        await first.stop()
        assert host.running
        await first.stop()  # a second stop is the object's own no-op; the host stays up
        assert host.running
        assert await second.ping() == "pong"
        await second.stop()
        assert host.stopped

    on_asyncio(scenario)
    assert first.log == ["teardown x"]
    assert second.log == ["teardown y"]


def test_async_with_and_restart(on_asyncio: Any) -> None:
    toy = Toy("a")

    async def scenario() -> None:
        async with toy as entered:
            assert entered is toy
            assert await toy.ping() == "pong"
        hosts: list[Any] = [toy._host_slot.host]
        assert hosts[0].stopped
        with pytest.raises(HostStopped):
            await toy.ping()
        await toy.start()  # a stopped object can be started again, on a fresh host
        hosts.append(toy._host_slot.host)
        assert hosts[1] is not hosts[0] and hosts[1].running
        await toy.stop()

    on_asyncio(scenario)
    assert toy.log == ["teardown a", "teardown a"]


def test_a_failed_start_keeps_its_type_and_releases_the_host(on_asyncio: Any) -> None:
    toy = Toy("a", fail_start=True)

    async def scenario() -> None:
        with pytest.raises(LookupError, match="start failed"):
            await toy.start()
        assert toy._host_slot.host is None and not toy._host_slot.leased
        assert host_of_loop(asyncio.get_running_loop()) is None
        await toy.stop()  # never started: nothing to stop, nothing raised

    on_asyncio(scenario)
    assert toy.log == []


def test_calls_without_a_host_say_how_to_get_one(on_asyncio: Any) -> None:
    async def scenario() -> None:
        with pytest.raises(AsyncioMisuseError, match=r"await mesh\.start\(\)"):
            await Toy().ping()

    on_asyncio(scenario)


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_loop_shutdown_without_stop_runs_every_teardown(ending: str) -> None:
    toy = Toy("a", "b")
    hosts: list[Any] = []

    async def main() -> None:
        await toy.start()
        hosts.append(toy._host_slot.host)
        if ending == "raise":
            raise ArithmeticError("main failed")

    if ending == "raise":
        with pytest.raises(ArithmeticError):
            asyncio.run(main())
    else:
        asyncio.run(main())
    assert hosts[0].stopped
    assert sorted(toy.log) == ["teardown a", "teardown b"]


async def test_under_trio_the_same_calls_run_directly() -> None:
    toy = Toy("a")
    await toy.start()
    assert toy._host_slot.host is None
    assert current_host.get() is None
    peers = toy.agents[0].peers
    assert peers is not None
    assert await peers.request(4) == 8
    assert await toy.ping() == "pong"
    toy.add("late")
    await toy.stop()
    async with toy:
        assert await toy.ping() == "pong"
    assert toy.log == [
        "add late on main",
        "teardown a",
        "teardown late",
        "teardown a",
        "teardown late",
    ]


class Worker(Agent):
    role = "worker"
    requires_auth = True


def test_a_mesh_hands_its_slot_to_everything_it_builds(on_asyncio: Any, tmp_path: Any) -> None:
    mesh = Mesh({"blob_storage_path": str(tmp_path)}, env_file=None, environ={})
    early = mesh.add(Worker)

    async def scenario() -> None:
        async with mesh:
            late = mesh.add(Worker)  # on the Trio thread: the node runs there
            started = await mesh.start_agent(Worker)
            host = host_of_loop(asyncio.get_running_loop())
            assert host is not None and mesh._host_slot.host is host
            for agent in (early, late, started):
                built = [agent, agent.peers, agent.mailbox, agent._blob_storage]
                built.append(agent._auth_manager)
                assert all(obj._host_slot is mesh._host_slot for obj in built)  # type: ignore[union-attr]
                assert await agent.peers.request("nobody", {}, timeout=0.1) is None
        assert host.stopped

    on_asyncio(scenario)


def test_the_seam_is_written_on_the_class_not_patched_onto_it() -> None:
    for name in ("start", "stop", "__aenter__", "__aexit__", "add"):
        method = vars(Mesh)[name]
        assert method.__qualname__ == f"Mesh.{name}"
        assert method.__module__ == "jarvis_trio.mesh"
