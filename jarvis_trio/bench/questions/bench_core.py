"""Core runtime on one node: request round trips, concurrent requesters, notify streams and
the cost of idle agents.

Questions (targets from the issue):

* sequential ``request`` between two agents: req/s (≥ 50,000) and p99 latency (≤ 60 µs);
* 64 concurrent requesters against one agent: req/s (≥ 50,000);
* ``notify`` stream to one agent: msg/s (≥ 200,000), none lost;
* 10,000 idle agents in one node: start time (≤ 2 s) and memory per agent (≤ 10 KB,
  tracemalloc, measured in a separate run so tracing does not slow the timing run);
* the pending-request table with ``timeout=3600`` at 1,000 req/s for 60 s (10 s with
  ``--quick``), in virtual time: the deadline wheel's buckets and heap slots must stay
  bounded by the requests pending, not grow with the timeout (it kept a bucket per 5 ms
  tick for an hour: 197 per second of traffic).

Each figure is the median of several runs, every run in a fresh ``trio.run``. The machine is
shared: next to each wall-clock rate the note gives the rate per CPU-second of this process
(time the process was not given the CPU does not count), and the first row measures the
scheduler's own ceiling — two bare Trio tasks handing a value back and forth — in the same
conditions, so a figure can be read against what Trio itself manages at that moment.
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import trio
import trio.testing
from outcome import Value

from jarvis_trio.agent import CustomAgent
from jarvis_trio.bench.questions._agents import Caller, Echo
from jarvis_trio.bench.results import Result, Series, median, percentile, step
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.peers.messages import IncomingMessage


class Sink(CustomAgent):
    role = "sink"
    expected = 0

    async def setup(self) -> None:
        self.count = 0
        self.done = trio.Event()

    async def on_peer_notify(self, message: IncomingMessage) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


class Sleeper(CustomAgent):
    role = "idle"


def _config(folder: str) -> dict[str, Any]:
    return {"node_name": "bench", "blob_storage_path": folder}


def _open(folder: str) -> Any:
    return open_mesh(_config(folder), env_file=None, environ={})


def sequential(count: int, folder: str) -> tuple[float, float, float, list[float]]:
    """(req/s, p99 µs, req per CPU-second, latencies in µs) of ``count`` back-to-back
    requests."""
    out: list[tuple[float, float, float, list[float]]] = []

    async def main() -> None:
        async with _open(folder) as mesh:
            await mesh.start_agent(Echo)
            caller = await mesh.start_agent(Caller)
            request = caller.peers.request
            for n in range(min(2000, count)):  # warm-up
                await request("echo", {"n": n})
            samples = [0] * count
            clock = time.perf_counter_ns
            gc.collect()
            cpu = time.process_time()
            began = clock()
            for n in range(count):
                t0 = clock()
                await request("echo", {"n": n})
                samples[n] = clock() - t0
            elapsed = (clock() - began) / 1e9
            cpu = time.process_time() - cpu
            micros = [ns / 1000 for ns in samples]
            out.append((count / elapsed, percentile(micros, 99), count / cpu, micros))

    trio.run(main)
    return out[0]


def trio_floor(count: int) -> tuple[float, float]:
    """(round trips/s, round trips per CPU-second) of two bare Trio tasks handing a value
    back and forth with ``wait_task_rescheduled``: the scheduler's own ceiling for any
    request/reply between two tasks on this machine, measured in the same conditions as the
    figures above."""
    out: list[tuple[float, float]] = []

    def abort(_: object) -> trio.lowlevel.Abort:
        return trio.lowlevel.Abort.SUCCEEDED

    async def main() -> None:
        ready = trio.Event()
        server: list[trio.lowlevel.Task] = []

        async def serve() -> None:
            server.append(trio.lowlevel.current_task())
            ready.set()
            while True:
                caller = await trio.lowlevel.wait_task_rescheduled(abort)
                trio.lowlevel.reschedule(caller, Value(None))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await ready.wait()
            await trio.testing.wait_all_tasks_blocked()
            me = trio.lowlevel.current_task()
            cpu = time.process_time()
            began = time.perf_counter()
            for _ in range(count):
                trio.lowlevel.reschedule(server[0], Value(me))
                await trio.lowlevel.wait_task_rescheduled(abort)
            elapsed = time.perf_counter() - began
            out.append((count / elapsed, count / (time.process_time() - cpu)))
            nursery.cancel_scope.cancel()

    trio.run(main)
    return out[0]


def concurrent(requesters: int, each: int, folder: str) -> tuple[float, float]:
    """(req/s, req per CPU-second) of ``requesters`` tasks each making ``each`` requests to
    one agent."""
    out: list[tuple[float, float]] = []

    async def main() -> None:
        async with _open(folder) as mesh:
            await mesh.start_agent(Echo)
            callers = [await mesh.start_agent(Caller) for _ in range(requesters)]

            async def loop(caller: CustomAgent) -> None:
                request = caller.peers.request
                for n in range(each):
                    reply = await request("echo", {"n": n})
                    assert reply is not None

            gc.collect()
            cpu = time.process_time()
            began = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for caller in callers:
                    nursery.start_soon(loop, caller)
            total = requesters * each
            out.append((total / (time.perf_counter() - began), total / (time.process_time() - cpu)))

    trio.run(main)
    return out[0]


def notify_stream(count: int, folder: str) -> tuple[float, int, float]:
    """(msg/s, lost, msg per CPU-second) of ``count`` notifications to one agent."""
    out: list[tuple[float, int, float]] = []

    async def main() -> None:
        Sink.expected = count
        async with _open(folder) as mesh:
            sink = await mesh.start_agent(Sink)
            caller = await mesh.start_agent(Caller)
            notify = caller.peers.notify
            target = sink.agent_id
            gc.collect()
            cpu = time.process_time()
            began = time.perf_counter()
            delivered = 0
            for n in range(count):
                delivered += await notify(target, {"n": n})
            assert isinstance(sink, Sink)
            with trio.fail_after(30):
                await sink.done.wait()
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu
            out.append((count / elapsed, count - min(delivered, sink.count), count / cpu))

    trio.run(main)
    return out[0]


def idle_agents(count: int, folder: str, *, trace: bool) -> float:
    """Seconds to start ``count`` idle agents, or KB per agent when ``trace``."""
    out: list[float] = []

    async def main() -> None:
        mesh = Mesh(_config(folder), env_file=None, environ={})
        gc.collect()
        if trace:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
        began = time.perf_counter()
        for _ in range(count):
            mesh.add(Sleeper)
        await mesh.start()
        elapsed = time.perf_counter() - began
        if trace:
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            out.append(used / count / 1024)
        else:
            out.append(elapsed)
        await mesh.stop()

    trio.run(main)
    return out[0]


def _runs(times: int, fn: Callable[[], Any]) -> list[Any]:
    return [fn() for _ in range(times)]


SWEEP = (1, 4, 16, 64)


def pending_wheel(seconds: float, rate: int, folder: str) -> tuple[int, int, int]:
    """(requests sent, peak pending requests, peak timer slots) of ``rate`` req/s with
    ``timeout=3600`` for ``seconds`` of virtual time (MockClock, autojump)."""
    out: list[tuple[int, int, int]] = []

    async def main() -> None:
        async with _open(folder) as mesh:
            await mesh.start_agent(Echo)
            caller = await mesh.start_agent(Caller)
            pending = mesh.router.pending
            sent = peak_pending = peak_slots = 0

            async def one() -> None:
                await caller.peers.request("echo", {"n": 1}, timeout=3600)

            async with trio.open_nursery() as nursery:
                end = trio.current_time() + seconds
                while trio.current_time() < end:
                    nursery.start_soon(one)
                    sent += 1
                    await trio.sleep(1 / rate)
                    peak_pending = max(peak_pending, len(pending))
                    peak_slots = max(peak_slots, pending.timer_buckets)
            out.append((sent, peak_pending, peak_slots))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out[0]


def run(quick: bool) -> list[Result]:
    """Answer the questions; quick mode keeps the whole module well under a minute."""
    runs = 3 if quick else 7
    sequential_n = 10_000 if quick else 50_000
    total = 3_200 if quick else 64_000  # requests per concurrency setting of the sweep
    with tempfile.TemporaryDirectory() as folder:
        step("trio floor")
        floor = _runs(runs, lambda: trio_floor(sequential_n))
        step(f"sequential requests, {runs} x {sequential_n:,}")
        seq = _runs(runs, lambda: sequential(sequential_n, folder))
        step("64 concurrent requesters")
        conc = _runs(runs, lambda: concurrent(64, 200 if quick else 1000, folder))
        sweep: list[float] = []
        for requesters in SWEEP:
            step(f"throughput with {requesters} concurrent requesters")
            each = total // requesters
            rates = [concurrent(requesters, each, folder)[0] for _ in range(1 if quick else runs)]
            sweep.append(median(rates))
        step("notify stream")
        stream = _runs(runs, lambda: notify_stream(50_000 if quick else 300_000, folder))
        step("10,000 idle agents")
        starts = _runs(2 if quick else 5, lambda: idle_agents(10_000, folder, trace=False))
        memory = idle_agents(10_000, folder, trace=True)
        wheel_seconds = 10.0 if quick else 60.0
        step(f"pending table, timeout=3600 at 1,000 req/s for {wheel_seconds:.0f} s")
        sent, peak_pending, peak_slots = pending_wheel(wheel_seconds, 1000, folder)
    floor_rate = median([r for r, _ in floor])
    floor_cpu = median([c for _, c in floor])
    rate = median([r for r, _, _, _ in seq])
    rate_cpu = median([c for _, _, c, _ in seq])
    p99 = median([p for _, p, _, _ in seq])
    middle = sorted(seq, key=lambda r: r[0])[len(seq) // 2]  # the median run's distribution
    conc_rate = median([r for r, _ in conc])
    conc_cpu = median([c for _, c in conc])
    notify_rate = median([r for r, _, _ in stream])
    notify_cpu = median([c for _, _, c in stream])
    lost = max(lost for _, lost, _ in stream)
    start = median(starts)
    return [
        Result(
            "core: trio floor (bare task ping-pong)",
            floor_rate,
            "round trips/s",
            "—",
            True,
            "scheduler ceiling for comparison",
        ),
        Result(
            "core: sequential request",
            rate,
            "req/s",
            "≥ 50,000",
            rate >= 50_000,
            f"median of {runs} x {sequential_n}; best run {max(r[0] for r in seq):,.0f}; "
            f"{rate / floor_rate:.0%} of the trio floor; {rate_cpu:,.0f} per CPU-second",
        ),
        Result(
            "core: sequential request / trio floor",
            rate_cpu / floor_cpu,
            "ratio per CPU-second",
            "≥ 0.70",
            rate_cpu / floor_cpu >= 0.70,
            f"{rate_cpu:,.0f} req vs {floor_cpu:,.0f} round trips per CPU-second, same run "
            f"(wall clock: {rate / floor_rate:.2f})",
        ),
        Result(
            "core: sequential request p99",
            p99,
            "µs",
            "≤ 60 µs",
            p99 <= 60,
            samples=tuple(middle[3]),
            sample_unit="µs",
        ),
        Result(
            "core: 64 concurrent requesters",
            conc_rate,
            "req/s",
            "≥ 50,000",
            conc_rate >= 50_000,
            f"{conc_cpu:,.0f} per CPU-second",
        ),
        Result(
            "core: 64 concurrent / sequential",
            conc_cpu / rate_cpu,
            "ratio per CPU-second",
            "≥ 2",
            conc_cpu / rate_cpu >= 2,
            f"wall clock: {conc_rate / rate:.2f}",
        ),
        Result(
            "core: notify stream",
            notify_rate,
            "msg/s",
            "≥ 200,000, none lost",
            notify_rate >= 200_000 and lost == 0,
            f"lost {lost}; {notify_cpu:,.0f} per CPU-second",
        ),
        Result(
            "core: request throughput against concurrent requesters",
            max(sweep),
            "req/s",
            "report",
            True,
            "peak of " + ", ".join(f"{c}: {r:,.0f}" for c, r in zip(SWEEP, sweep, strict=True)),
            series=Series(tuple(float(c) for c in SWEEP), tuple(sweep), "requesters", "req/s"),
        ),
        Result("core: start 10,000 idle agents", start, "s", "≤ 2 s", start <= 2.0),
        Result(
            "core: memory per idle agent", memory, "KB", "≤ 10 KB", memory <= 10.0, "tracemalloc"
        ),
        Result(
            "core: pending-request timer slots, timeout=3600 at 1,000 req/s",
            peak_slots,
            "slots",
            "bounded by pending",
            peak_slots <= 2 * peak_pending + 66,
            f"{sent:,} requests over {wheel_seconds:.0f} s (virtual); peak pending "
            f"{peak_pending}; before the fix a bucket per 5 ms tick for the whole hour",
        ),
    ]
