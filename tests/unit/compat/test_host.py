"""TrioHost: calls from a real asyncio loop into a Trio thread, and back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sniffio
import trio

from jarvis_trio.compat import TrioHost
from jarvis_trio.errors import AsyncioMisuseError, HostStopped, MeshError


class Marker(Exception):
    """A user exception type that must survive the crossing."""


async def echo(value: Any, *, suffix: str = "") -> Any:
    await trio.lowlevel.checkpoint()
    return f"{value}{suffix}" if suffix else value


async def where() -> tuple[str, int]:
    await trio.lowlevel.checkpoint()
    return sniffio.current_async_library(), threading.get_ident()


def test_call_runs_on_the_trio_thread_and_returns(on_asyncio: Any) -> None:
    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            library, thread = await host.call(where)
            assert library == "trio"
            assert thread != threading.get_ident()
            assert await host.call(echo, 41) == 41
            assert await host.call(echo, "a", suffix="b") == "ab"
            # The asyncio side is untouched by the crossing.
            assert sniffio.current_async_library() == "asyncio"
            asyncio.get_running_loop()
        finally:
            await host.aclose()
        assert host.stopped

    on_asyncio(scenario)


def test_exceptions_keep_their_type_and_identity(on_asyncio: Any) -> None:
    raised: list[BaseException] = []

    async def fail(kind: str) -> None:
        await trio.lowlevel.checkpoint()
        exc: BaseException = Marker("boom") if kind == "marker" else KeyError("missing")
        if kind == "group":
            exc = ExceptionGroup("several", [Marker("one"), ValueError("two")])
        raised.append(exc)
        raise exc

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            with pytest.raises(Marker, match="boom") as marker:
                await host.call(fail, "marker")
            assert marker.value is raised[-1]
            with pytest.raises(KeyError):
                await host.call(fail, "key")
            with pytest.raises(ExceptionGroup) as group:
                await host.call(fail, "group")
            assert group.value.subgroup(Marker) is not None
            assert group.value.subgroup(ValueError) is not None
            # The host keeps serving after failures.
            assert await host.call(echo, "still here") == "still here"
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_many_concurrent_calls_each_get_their_own_result(on_asyncio: Any) -> None:
    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            results = await asyncio.gather(*(host.call(echo, i) for i in range(500)))
            assert results == list(range(500))
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_cancelling_the_asyncio_caller_cancels_the_trio_side_and_waits_for_it(
    on_asyncio: Any,
) -> None:
    log: list[str] = []

    async def slow(started: threading.Event) -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            log.append("trio: unwinding")
            with trio.CancelScope(shield=True):
                for _ in range(20):  # cleanup that yields to the scheduler many times
                    await trio.lowlevel.checkpoint()
            log.append("trio: unwound")

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            started = threading.Event()
            task = asyncio.create_task(host.call(slow, started))
            await asyncio.to_thread(started.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            log.append("asyncio: cancelled")
            assert not host._active
        finally:
            await host.aclose()

    on_asyncio(scenario)
    assert log == ["trio: unwinding", "trio: unwound", "asyncio: cancelled"]


def test_a_timeout_on_the_asyncio_side_cancels_the_trio_side(on_asyncio: Any) -> None:
    ended = threading.Event()

    async def forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            ended.set()

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await host.call(forever)
            assert ended.is_set()
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_repeated_cancellation_while_unwinding_raises_once(on_asyncio: Any) -> None:
    release = threading.Event()
    unwinding = threading.Event()
    started = threading.Event()

    async def stubborn() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:
            unwinding.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(release.wait, 5)

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            task = asyncio.create_task(host.call(stubborn))
            assert await asyncio.to_thread(started.wait, 5)
            task.cancel()
            assert await asyncio.to_thread(unwinding.wait, 5)
            for _ in range(3):  # cancelled again and again, one loop turn apart
                task.cancel()
                await asyncio.sleep(0)
            assert not task.done()  # still waiting for the Trio side to unwind
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()
            assert not host._active
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_a_call_cancelled_before_it_started_does_not_run(on_asyncio: Any) -> None:
    ran: list[int] = []

    async def record(i: int) -> None:
        ran.append(i)
        await trio.lowlevel.checkpoint()

    frozen = threading.Event()
    thaw = threading.Event()

    async def freeze() -> None:
        # Blocks the whole Trio thread (no checkpoint) until thawed, so that the start and
        # the cancellation of the next call are both waiting when Trio looks again.
        frozen.set()
        thaw.wait(5)
        await trio.lowlevel.checkpoint()

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            freezing = asyncio.create_task(host.call(freeze))
            assert await asyncio.to_thread(frozen.wait, 5)
            task = asyncio.create_task(host.call(record, 1))
            await asyncio.sleep(0)  # the task runs first: the call is posted and awaited
            task.cancel()
            await asyncio.sleep(0)  # the cancellation is posted too
            thaw.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            await freezing
            assert not host._active
        finally:
            await host.aclose()

    on_asyncio(scenario)
    # Cancelled while still on its way to the Trio side: it never ran.
    assert ran == []


def test_stopping_the_host_fails_calls_in_flight_and_later_calls(on_asyncio: Any) -> None:
    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        started = threading.Event()

        async def park() -> None:
            started.set()
            await trio.sleep_forever()

        task = asyncio.create_task(host.call(park))
        await asyncio.to_thread(started.wait, 5)
        await host.aclose()
        with pytest.raises(HostStopped, match="stopped while"):
            await task
        with pytest.raises(HostStopped, match="stopped"):
            await host.call(echo, 1)
        with pytest.raises(HostStopped):
            host.run_sync(len, "x")
        await host.aclose()  # idempotent

    on_asyncio(scenario)


def test_backpressure_bounds_calls_in_flight(on_asyncio: Any) -> None:
    in_flight: list[int] = [0]
    peak: list[int] = [0]

    two_in = threading.Event()

    async def occupy(gate: trio.Event) -> None:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        if in_flight[0] == 2:
            two_in.set()
        try:
            await gate.wait()
        finally:
            in_flight[0] -= 1

    async def scenario() -> None:
        host = TrioHost(max_in_flight=2)
        await host.start()
        try:
            gate = host.run_sync(trio.Event)
            tasks = [asyncio.create_task(host.call(occupy, gate)) for _ in range(5)]
            assert await asyncio.to_thread(two_in.wait, 5)
            # Three callers wait for a slot on the asyncio side; nothing more crossed.
            assert host.run_sync(lambda: in_flight[0]) == 2
            assert not any(t.done() for t in tasks)
            host.run_sync(gate.set)
            await asyncio.gather(*tasks)
        finally:
            await host.aclose()

    on_asyncio(scenario)
    assert peak[0] == 2


def test_run_sync_runs_on_the_trio_thread(on_asyncio: Any) -> None:
    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            assert host.run_sync(sniffio.current_async_library) == "trio"
            assert host.run_sync(threading.get_ident) != threading.get_ident()
            with pytest.raises(ZeroDivisionError):
                host.run_sync(lambda: 1 / 0)

            async def nested() -> bool:
                # On the host thread, run_sync runs directly instead of deadlocking.
                return host.in_host_thread() and host.run_sync(host.in_host_thread)

            assert await host.call(nested)
            assert not host.in_host_thread()
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_shutdown_hooks_run_on_trio_and_are_bounded(on_asyncio: Any) -> None:
    seen: list[str] = []

    async def polite() -> None:
        seen.append(f"polite on {sniffio.current_async_library()}")
        await trio.lowlevel.checkpoint()

    async def hangs() -> None:
        try:
            await trio.sleep_forever()
        finally:
            seen.append("hang cancelled")

    async def broken() -> None:
        raise RuntimeError("hook failure is logged, not raised")

    async def scenario() -> None:
        host = TrioHost(shutdown_timeout=0.05)
        await host.start()
        host.add_shutdown_hook("a", polite)
        host.add_shutdown_hook("b", hangs)
        host.add_shutdown_hook("c", broken)
        host.add_shutdown_hook("d", broken)
        host.remove_shutdown_hook("d")
        await host.aclose()

    on_asyncio(scenario)
    assert sorted(seen) == ["hang cancelled", "polite on trio"]


def test_agent_code_using_asyncio_on_the_trio_side_is_told_what_to_use(on_asyncio: Any) -> None:
    async def naughty() -> None:
        await asyncio.sleep(0.01)

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            with pytest.raises(AsyncioMisuseError, match=r"asyncio\.sleep.*anyio\.sleep"):
                await host.call(naughty)
            await asyncio.sleep(0)  # asyncio itself still works on this side
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_lifecycle_misuse_and_bad_settings(on_asyncio: Any) -> None:
    with pytest.raises(ValueError, match="shutdown_timeout"):
        TrioHost(shutdown_timeout=0)
    with pytest.raises(ValueError, match="max_in_flight"):
        TrioHost(max_in_flight=0)
    with pytest.raises(TypeError, match="max_in_flight"):
        TrioHost(max_in_flight=2.5)  # type: ignore[arg-type]

    async def scenario() -> None:
        host = TrioHost()
        with pytest.raises(HostStopped, match="new"):
            await host.call(echo, 1)
        await host.start()
        try:
            with pytest.raises(MeshError, match="already started"):
                await host.start()
        finally:
            await host.aclose()
        never_started = TrioHost()
        await never_started.aclose()
        assert never_started.stopped

    on_asyncio(scenario)


def test_close_blocking_from_a_plain_thread() -> None:
    box: dict[str, TrioHost] = {}

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        box["host"] = host

    # The loop ends without closing the host: the host must still stop on request.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    host = box["host"]
    assert host.running
    assert host.close_blocking(5.0)
    assert host.stopped
    assert TrioHost().close_blocking(1.0)


def test_idle_workers_are_bounded_and_reused(
    on_asyncio: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jarvis_trio.compat import _host

    monkeypatch.setattr(_host, "MAX_IDLE_WORKERS", 2)
    tasks_seen: set[int] = set()
    five_running = threading.Event()

    async def hold(gate: trio.Event) -> int:
        tasks_seen.add(id(trio.lowlevel.current_task()))
        if len(tasks_seen) == 5:
            five_running.set()
        await gate.wait()
        return 1

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            gate = host.run_sync(trio.Event)
            calls = [asyncio.create_task(host.call(hold, gate)) for _ in range(5)]
            # Five calls at once need five workers; once they finish, two stay parked.
            assert await asyncio.to_thread(five_running.wait, 5)
            host.run_sync(gate.set)
            assert sum(await asyncio.gather(*calls)) == 5
            assert host.run_sync(lambda: len(host._idle)) == 2
            assert host._nursery is not None
            nursery = host._nursery
            workers = host.run_sync(lambda: {id(task) for task in nursery.child_tasks})
            assert len(workers) == 3  # the two parked and the leader
            tasks_seen.clear()
            assert await host.call(hold, gate) == 1  # served by the leader, no new task
            assert tasks_seen <= workers
            assert host.run_sync(lambda: {id(task) for task in nursery.child_tasks}) == workers
        finally:
            await host.aclose()

    on_asyncio(scenario)


STARTED = threading.Event()


class Work:
    """Work a ``call_by_callback`` start hands back: ended by the test through ``done``."""

    def __init__(self, done: Any) -> None:
        self.done = done
        self.cancelled = False
        self.thread = threading.get_ident()
        STARTED.set()

    def cancel(self) -> None:
        self.cancelled = True


def test_call_by_callback_ends_through_done_without_a_worker(on_asyncio: Any) -> None:
    started: list[Work] = []
    ran: list[str] = []
    STARTED.clear()

    def start(value: int, done: Any) -> Work:
        work = Work(done)
        started.append(work)
        return work

    async def fallback(value: int) -> int:
        ran.append("fallback")
        await trio.lowlevel.checkpoint()
        return value

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            nursery = host._nursery
            assert nursery is not None
            workers = host.run_sync(lambda: len(nursery.child_tasks))
            call = asyncio.create_task(host.call_by_callback(start, fallback, 41))
            assert await asyncio.to_thread(STARTED.wait, 5)  # taken by the leader
            assert started[0].thread != threading.get_ident()  # started on the Trio thread
            assert not call.done()
            host.run_sync(started[0].done, 42)
            assert await call == 42
            assert ran == [] and not started[0].cancelled
            assert host.run_sync(lambda: len(nursery.child_tasks)) == workers
            assert not host._active
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_call_by_callback_falls_back_ends_at_once_or_raises(on_asyncio: Any) -> None:
    async def fallback(value: int) -> int:
        await trio.lowlevel.checkpoint()
        return value + 1

    def not_now(value: int, done: Any) -> None:
        return None

    def at_once(value: int, done: Any) -> Work:
        done(value * 2)
        return Work(done)

    def refuse(value: int, done: Any) -> Work:
        raise Marker(f"refused {value}")

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            assert await host.call_by_callback(not_now, fallback, 1) == 2
            assert await host.call_by_callback(at_once, fallback, 5) == 10
            with pytest.raises(Marker, match="refused 7"):
                await host.call_by_callback(refuse, fallback, 7)
            many = [host.call_by_callback(at_once, fallback, i) for i in range(100)]
            assert await asyncio.gather(*many) == [2 * i for i in range(100)]
            assert not host._active
        finally:
            await host.aclose()

    on_asyncio(scenario)


def test_cancelling_a_call_by_callback_cancels_its_work_first(on_asyncio: Any) -> None:
    started: list[Work] = []
    STARTED.clear()

    def start(done: Any) -> Work:
        work = Work(done)
        started.append(work)
        return work

    async def never() -> None:
        raise AssertionError("the work was started: no fallback")

    async def scenario() -> None:
        host = TrioHost()
        await host.start()
        try:
            call = asyncio.create_task(host.call_by_callback(start, never))
            assert await asyncio.to_thread(STARTED.wait, 5)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert started[0].cancelled  # before CancelledError reached the caller
            assert not host._active
            host.run_sync(started[0].done, "too late")  # ignored
            # a call in flight when the host stops fails as any other call does
            started.clear()
            STARTED.clear()
            call = asyncio.create_task(host.call_by_callback(start, never))
            assert await asyncio.to_thread(STARTED.wait, 5)
        finally:
            await host.aclose()
        with pytest.raises(HostStopped, match="stopped during"):
            await call

    on_asyncio(scenario)
