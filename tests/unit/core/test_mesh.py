"""The node: documented lifecycle, open_mesh, supervision, bounded and idempotent stop."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from jarvis_trio._supervision import NO_RESTART, RestartPolicy
from jarvis_trio.agent import CustomAgent
from jarvis_trio.errors import AgentCrashed, ConfigError, MeshError
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.messages import IncomingMessage

from .conftest import Echo, Idle, MeshFactory


def all_tasks() -> Iterator[trio.lowlevel.Task]:
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        assert task is not None
        yield task
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)


class Tracked(CustomAgent):
    role = "tracked"
    log: list[str]

    async def setup(self) -> None:
        self.log = ["setup"]

    async def teardown(self) -> None:
        self.log.append("teardown")


async def test_documented_start_stop_leaves_no_task_behind(new_mesh: Callable[..., Mesh]) -> None:
    before = len(list(all_tasks()))
    mesh = new_mesh()
    caller = mesh.add(Idle)
    tracked = mesh.add(Tracked)
    mesh.add(Echo)
    assert mesh.state == "new"
    await mesh.start()
    assert mesh.state == "running"
    assert tracked.is_started and tracked.log == ["setup"]
    assert await caller.peers.request("echo", {"x": 1}) == {
        "echo": {"x": 1},
        "from": caller.agent_id,
    }
    await mesh.stop()
    assert mesh.state == "stopped"
    assert tracked.log == ["setup", "teardown"]
    await mesh.stop()  # idempotent
    assert tracked.log == ["setup", "teardown"]
    assert len(list(all_tasks())) == before
    with pytest.raises(MeshError):
        await mesh.start()
    with pytest.raises(MeshError):
        mesh.add(Echo)


async def test_run_forever_returns_when_stopped(new_mesh: Callable[..., Mesh]) -> None:
    mesh = new_mesh()
    mesh.add(Echo)
    with pytest.raises(MeshError):
        await mesh.run_forever()
    await mesh.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mesh.run_forever)
        await trio.testing.wait_all_tasks_blocked()
        await mesh.stop()
    assert mesh.state == "stopped"


async def test_async_with_mesh(new_mesh: Callable[..., Mesh]) -> None:
    mesh = new_mesh()
    tracked = mesh.add(Tracked)
    async with mesh as running:
        assert running is mesh and mesh.state == "running"
        late = mesh.add(Echo)  # discoverable at once, set up soon after
        assert tracked.peers.get_peer("echo") is not None
        assert await tracked.peers.request(late.agent_id, {"q": 1}) is not None
    assert mesh.state == "stopped"
    assert tracked.log == ["setup", "teardown"]
    with pytest.raises(MeshError):
        async with mesh:
            pass


async def test_stop_before_start_is_harmless(new_mesh: Callable[..., Mesh]) -> None:
    mesh = new_mesh()
    await mesh.stop()
    assert mesh.state == "stopped"


def test_bad_config_fails_with_the_key() -> None:
    with pytest.raises(ConfigError, match="bind_prot"):
        Mesh({"bind_prot": 1}, env_file=None, environ={})


def test_a_forgotten_mesh_is_torn_down_when_the_run_ends(tmp_path: Any) -> None:
    tracked: list[Tracked] = []

    async def main() -> None:
        mesh = Mesh({"blob_storage_path": str(tmp_path)}, env_file=None, environ={})
        tracked.append(mesh.add(Tracked))  # type: ignore[arg-type]
        await mesh.start()

    trio.run(main)
    assert tracked[0].log == ["setup", "teardown"]


async def test_start_agent_needs_a_running_mesh(new_mesh: Callable[..., Mesh]) -> None:
    with pytest.raises(MeshError, match="running mesh"):
        await new_mesh().start_agent(Echo)


async def test_agents_added_after_start_are_discoverable_at_once(make_mesh: MeshFactory) -> None:
    async with make_mesh() as mesh:
        caller = await mesh.start_agent(Idle)
        versions = [mesh.directory.version.value]
        added = mesh.add(Echo)
        versions.append(mesh.directory.version.value)
        assert caller.peers.get_peer("echo") is not None
        assert versions[1] == versions[0] + 1
        assert not added.is_started
        assert await caller.peers.request("echo", {"q": 1}) is not None
        assert added.is_started


# -- supervision --------------------------------------------------------------------------


class Crashy(CustomAgent):
    role = "crashy"
    runs: list[float]
    teardowns: int
    fourth_run: trio.Event

    async def setup(self) -> None:
        self.runs = []
        self.teardowns = 0
        self.fourth_run = trio.Event()

    async def run(self) -> None:
        self.runs.append(trio.current_time())
        if len(self.runs) == 4:
            self.fourth_run.set()
        if len(self.runs) <= 3:
            raise RuntimeError(f"crash {len(self.runs)}")
        await trio.sleep_forever()

    async def teardown(self) -> None:
        self.teardowns += 1


async def test_a_crashing_run_is_restarted_with_backoff(
    make_mesh: MeshFactory,
    autojump_clock: trio.abc.Clock,
    seed: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = RestartPolicy(initial_delay=1.0, multiplier=2.0, max_delay=3.0, jitter=0.5)
    async with make_mesh(restart_policy=policy, rng=random.Random(seed)) as mesh:
        agent = await mesh.start_agent(Crashy)
        with trio.fail_after(60):
            await agent.fourth_run.wait()
        assert agent.teardowns == 0  # restarts do not tear down
    expected_rng = random.Random(seed)
    gaps = [b - a for a, b in zip(agent.runs, agent.runs[1:], strict=False)]
    expected = [policy.delay(n, expected_rng) for n in range(3)]
    assert gaps == pytest.approx(expected, abs=1e-6)
    assert all(0.5 * base <= gap <= base for gap, base in zip(gaps, [1, 2, 3], strict=True))
    crashes = [r for r in caplog.records if "run() crashed" in r.getMessage()]
    assert len(crashes) == 3
    assert all(r.exc_info is not None for r in crashes)
    assert agent.teardowns == 1


def test_backoff_is_bounded_and_validated() -> None:
    policy = RestartPolicy(initial_delay=0.5, max_delay=4.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(10_000, rng) == 4.0
    with pytest.raises(ValueError, match="jitter"):
        RestartPolicy(jitter=2)
    with pytest.raises(ValueError, match="initial_delay"):
        RestartPolicy(initial_delay=-1)


async def test_restart_sequence_resets_after_a_long_healthy_run(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    fourth = trio.Event()

    class Flaky(CustomAgent):
        role = "flaky"
        starts: list[float] = []

        async def run(self) -> None:
            self.starts.append(trio.current_time())
            if len(self.starts) == 4:
                fourth.set()
            # the second run stays healthy for 100 virtual seconds, past reset_after
            await trio.sleep(100 if len(self.starts) == 2 else 0)
            raise RuntimeError("again")

    policy = RestartPolicy(
        initial_delay=1.0, multiplier=10.0, max_delay=1000, jitter=0.0, reset_after=50
    )
    async with make_mesh(restart_policy=policy) as mesh:
        agent = await mesh.start_agent(Flaky)
        await fourth.wait()
    starts = agent.starts
    assert starts[1] - starts[0] == pytest.approx(1.0)  # first crash: 1 s
    assert starts[2] - starts[1] == pytest.approx(100 + 1.0)  # healthy 100 s: reset to 1 s
    assert starts[3] - starts[2] == pytest.approx(10.0)  # then it grows again


async def test_a_no_restart_crash_stops_the_node_and_propagates(
    make_mesh: MeshFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Fatal(CustomAgent):
        role = "fatal"
        restart_policy = NO_RESTART
        go = trio.Event()

        async def run(self) -> None:
            await self.go.wait()
            raise ValueError("bad state")

    body_reached_end = False
    tracked: Tracked | None = None
    with pytest.raises(AgentCrashed, match="bad state") as info:
        async with make_mesh() as mesh:
            tracked = await mesh.start_agent(Tracked)  # type: ignore[assignment]
            fatal = await mesh.start_agent(Fatal)
            Fatal.go.set()
            await trio.sleep_forever()
            body_reached_end = True
    assert not body_reached_end
    assert isinstance(info.value.__cause__, ValueError)
    assert fatal.agent_id in str(info.value)
    assert tracked is not None and tracked.log == ["setup", "teardown"]
    assert mesh.state == "stopped"
    assert len([r for r in caplog.records if "crashed" in r.getMessage()]) == 1


async def test_a_no_restart_crash_in_the_documented_form(new_mesh: Callable[..., Mesh]) -> None:
    class Fatal(CustomAgent):
        role = "fatal"

        async def run(self) -> None:
            await trio.lowlevel.checkpoint()
            raise KeyError("gone")

    mesh = new_mesh(restart_policy=NO_RESTART)
    mesh.add(Fatal)
    await mesh.start()
    with pytest.raises(AgentCrashed, match="gone"):
        await mesh.run_forever()
    with pytest.raises(AgentCrashed):
        await mesh.stop()


async def test_setup_failure_fails_start(new_mesh: Callable[..., Mesh]) -> None:
    class Broken(CustomAgent):
        role = "broken"

        async def setup(self) -> None:
            raise OSError("cannot open")

    mesh = new_mesh()
    tracked = mesh.add(Tracked)
    mesh.add(Broken)
    with pytest.raises(OSError, match="cannot open"):
        await mesh.start()
    assert mesh.state == "stopped"
    assert tracked.log == ["setup", "teardown"]


# -- stop ---------------------------------------------------------------------------------


class Stuck(CustomAgent):
    role = "stuck"
    torn_down = False

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def teardown(self) -> None:
        type(self).torn_down = True


async def test_stop_with_handlers_in_flight_is_bounded(
    new_mesh: Callable[..., Mesh], autojump_clock: trio.abc.Clock
) -> None:
    mesh = new_mesh(stop_grace_period=2.0)
    caller = mesh.add(Idle)
    mesh.add(Stuck)
    tracked = mesh.add(Tracked)
    await mesh.start()
    outcomes: list[Any] = []
    answered_at: list[float] = []
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            outcomes.append(await caller.peers.request("stuck", {}, timeout=1000))
            answered_at.append(trio.current_time())

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await mesh.stop()
        elapsed = trio.current_time() - start
    assert outcomes == [None]
    assert answered_at[0] == start  # the requester got None at once
    assert elapsed == pytest.approx(2.0, abs=0.01)  # grace period, then cancellation
    assert Stuck.torn_down and tracked.log == ["setup", "teardown"]


async def test_idle_agents_stop_at_once(
    new_mesh: Callable[..., Mesh], autojump_clock: trio.abc.Clock
) -> None:
    class Looper(CustomAgent):
        role = "looper"

        async def run(self) -> None:
            while True:
                message = await self.peers.receive(timeout=1)
                if message is not None and message.is_request:
                    await self.peers.respond(message, {"ok": True})

    mesh = new_mesh(stop_grace_period=30.0)
    for _ in range(3):
        mesh.add(Looper)
        mesh.add(Echo)
    await mesh.start()
    start = trio.current_time()
    await mesh.stop()
    assert trio.current_time() - start < 1.0


async def test_a_busy_handler_finishes_within_the_grace_period(
    new_mesh: Callable[..., Mesh], autojump_clock: trio.abc.Clock
) -> None:
    finished: list[float] = []

    class Slow(CustomAgent):
        role = "slow"

        async def on_peer_notify(self, message: IncomingMessage) -> None:
            await trio.sleep(3)
            finished.append(trio.current_time())

    mesh = new_mesh(stop_grace_period=10.0)
    caller = mesh.add(Idle)
    mesh.add(Slow)
    await mesh.start()
    for n in range(3):  # one in flight, two queued: queued work is not started
        await caller.peers.notify("slow", {"n": n})
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    await mesh.stop()
    assert finished == [start + 3]
    assert trio.current_time() - start == pytest.approx(3)


async def test_cancelling_the_host_tears_everything_down(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    tracked: Tracked | None = None
    with trio.move_on_after(0.2) as scope:
        async with make_mesh() as mesh:
            tracked = await mesh.start_agent(Tracked)  # type: ignore[assignment]
            await mesh.start_agent(Stuck)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert tracked is not None and tracked.log == ["setup", "teardown"]


async def test_an_error_in_the_body_surfaces_unwrapped(make_mesh: MeshFactory) -> None:
    with pytest.raises(LookupError, match="user bug"):
        async with make_mesh() as mesh:
            await mesh.start_agent(Echo)
            raise LookupError("user bug")


async def test_requests_after_stop_return_none(new_mesh: Callable[..., Mesh]) -> None:
    mesh = new_mesh()
    caller = mesh.add(Idle)
    mesh.add(Echo)
    await mesh.start()
    await mesh.stop()
    assert await caller.peers.request("echo", {}) is None
    assert await caller.peers.notify("echo", {}) is False


def test_teardown_failure_is_logged_not_raised(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class BadTeardown(CustomAgent):
        role = "bad-teardown"

        async def teardown(self) -> None:
            raise RuntimeError("teardown broke")

    async def main() -> None:
        async with Mesh({"blob_storage_path": str(tmp_path)}, env_file=None, environ={}) as mesh:
            await mesh.start_agent(BadTeardown)

    with caplog.at_level(logging.ERROR):
        trio.run(main)
    assert any("teardown() failed" in r.getMessage() for r in caplog.records)


async def test_an_agent_may_stop_its_own_node_promptly(
    new_mesh: Callable[..., Mesh], autojump_clock: trio.abc.Clock
) -> None:
    holder: list[Mesh] = []

    class Stopper(CustomAgent):
        role = "stopper"

        async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
            await holder[0].stop()
            return {"stopping": True}

    mesh = new_mesh(stop_grace_period=30.0)
    holder.append(mesh)
    caller = mesh.add(Idle)
    mesh.add(Stopper)
    tracked = mesh.add(Tracked)
    await mesh.start()
    start = trio.current_time()
    # the reply races the shutdown: either it or None, but at once
    assert await caller.peers.request("stopper", {}) in ({"stopping": True}, None)
    await mesh.run_forever()
    assert trio.current_time() - start < 1
    assert tracked.log == ["setup", "teardown"]


async def test_nodes_in_one_process_share_nothing(
    make_mesh: MeshFactory, autojump_clock: trio.abc.Clock
) -> None:
    async with make_mesh(node_name="left") as left, make_mesh(node_name="right") as right:
        for mesh in (left, right):
            await mesh.start_agent(Echo, agent_id="echo-1")  # the same id on both nodes
        left_caller = await left.start_agent(Idle)
        right_caller = await right.start_agent(Idle)
        assert [a.agent_id for a in left.agents] != [a.agent_id for a in right.agents]
        reply = await left_caller.peers.request("echo-1", {"side": "left"})
        assert reply == {"echo": {"side": "left"}, "from": left_caller.agent_id}
        assert right_caller.peers.get_peer("caller") is None  # no leak across nodes
        with trio.move_on_after(0.01):
            await left_caller.peers.request(right_caller.agent_id, {"x": 1})  # unknown here
        assert (left.late_replies, right.late_replies) == (0, 0)
        assert left.directory.version.value == right.directory.version.value == 2


def test_agent_ids_are_bounded(new_mesh: Callable[..., Mesh]) -> None:
    mesh = new_mesh()
    assert mesh.add(Echo, agent_id="e" * 256).agent_id == "e" * 256
    with pytest.raises(ValueError, match="at most 256 characters"):
        mesh.add(Echo, agent_id="e" * 257)
