"""The anyio shim: requests made from an asyncio program to a mesh hosted on the Trio thread.

Questions (targets from the issue):

* request round trip from asyncio through the shim: p50 at most 2x the p50 of the same request made
  natively on Trio, in the same run (same process, same mesh, same agents, rounds interleaved
  so that both see the same machine load);
* the same p50 gap (shim minus native) counted in bare cross-thread round trips (one byte each
  way over a socket pair between two plain threads, the least any two-thread design pays per
  call, before either event loop does any work), measured in blocks alternating with the
  requests: at most 2;
* 64 concurrent asyncio callers: requests per second (≥ 20,000), and over the same load from 64
  Trio tasks on the same mesh, measured right before it in the same run: at least 0.8.

Each figure is the median of several runs; every run is a fresh ``asyncio.run`` with its own
mesh and its own Trio runtime thread.
"""

from __future__ import annotations

import asyncio
import time

import trio

from jarvis_trio.agent import Agent
from jarvis_trio.bench.questions._agents import Caller, Echo
from jarvis_trio.bench.questions._threads import thread_echo
from jarvis_trio.bench.results import Result, median, percentile
from jarvis_trio.compat import TrioHost
from jarvis_trio.mesh import Mesh
from jarvis_trio.peers.client import PeerClient

CALLERS = 64
P50_TARGET = 2.0
GAP_TARGET = 2.0
RATE_TARGET = 20_000.0
RATE_RATIO_TARGET = 0.8


async def _latencies(peers: PeerClient, count: int) -> list[float]:
    """``count`` sequential requests, each timed. Awaited on the Trio thread (through
    ``host.call``) it measures native requests; awaited from asyncio, requests through the
    shim — the same code, so the two figures differ only by the boundary."""
    samples = []
    for i in range(count):
        started = time.perf_counter()
        await peers.request("echo", {"n": i})
        samples.append(time.perf_counter() - started)
    return samples


async def _started_mesh() -> tuple[Mesh, Agent]:
    """A started mesh with an echo and a caller."""
    mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
    mesh.add(Echo)
    caller = mesh.add(Caller)
    await mesh.start()
    return mesh, caller


def _host_of(mesh: Mesh) -> TrioHost:
    """The Trio host of a mesh started from asyncio."""
    host = mesh._host_slot.host
    assert isinstance(host, TrioHost)
    return host


async def _latency_run(rounds: int, per_round: int) -> tuple[float, float, float]:
    """p50 (seconds) of native requests, shim requests and bare thread round trips, in
    interleaved rounds."""
    mesh, caller = await _started_mesh()
    host = _host_of(mesh)
    native: list[float] = []
    shim: list[float] = []
    bare: list[float] = []
    try:
        with thread_echo() as echo:
            await _latencies(caller.peers, per_round)  # warm-up, both sides
            await host.call(_latencies, caller.peers, per_round)
            for _ in range(rounds):
                native += await host.call(_latencies, caller.peers, per_round)
                shim += await _latencies(caller.peers, per_round)
                bare += echo.round_trips(per_round)
    finally:
        await mesh.stop()
    return percentile(native, 50), percentile(shim, 50), percentile(bare, 50)


async def _native_rate(peers: PeerClient, per_caller: int) -> float:
    """On the Trio thread: requests per second with CALLERS Trio tasks."""

    async def one_caller() -> None:
        for i in range(per_caller):
            await peers.request("echo", {"n": i})

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(CALLERS):
            nursery.start_soon(one_caller)
    return CALLERS * per_caller / (time.perf_counter() - started)


async def _rate_run(per_caller: int) -> tuple[float, float]:
    """Requests per second with CALLERS asyncio tasks each making ``per_caller`` requests,
    and, for comparison, with CALLERS Trio tasks on the same mesh: the mean of a Trio round
    just before and one just after, so that a change of the machine's load in between moves
    both sides of the ratio alike."""
    mesh, caller = await _started_mesh()
    host = _host_of(mesh)
    peers = caller.peers

    async def one_caller(n: int) -> None:
        for i in range(n):
            await peers.request("echo", {"n": i})

    try:
        await asyncio.gather(*(one_caller(20) for _ in range(CALLERS)))  # warm-up
        before = await host.call(_native_rate, peers, per_caller)
        started = time.perf_counter()
        await asyncio.gather(*(one_caller(per_caller) for _ in range(CALLERS)))
        elapsed = time.perf_counter() - started
        after = await host.call(_native_rate, peers, per_caller)
    finally:
        await mesh.stop()
    return CALLERS * per_caller / elapsed, (before + after) / 2


def run(quick: bool) -> list[Result]:
    runs = 3 if quick else 5
    rounds, per_round = (4, 500) if quick else (10, 1000)
    per_caller = 150 if quick else 500

    ratios: list[float] = []
    gaps: list[float] = []
    natives: list[float] = []
    shims: list[float] = []
    bares: list[float] = []
    for _ in range(runs):
        native, shim, bare = asyncio.run(_latency_run(rounds, per_round))
        natives.append(native)
        shims.append(shim)
        bares.append(bare)
        ratios.append(shim / native)
        gaps.append((shim - native) / bare)
    rate_runs = [asyncio.run(_rate_run(per_caller)) for _ in range(runs)]
    rates = [shim for shim, _ in rate_runs]
    rate_ratios = [shim / native for shim, native in rate_runs]
    # A pure Trio program, for reference: the same request under trio.run on the main thread.
    pure = median([trio.run(_pure_trio_p50, per_round) for _ in range(runs)])

    ratio = median(ratios)
    gap = median(gaps)
    rate = median(rates)
    rate_ratio = median(rate_ratios)
    return [
        Result(
            question="compat: asyncio request p50 / native Trio p50",
            figure=ratio,
            unit="x",
            target=f"<= {P50_TARGET:g}",
            ok=ratio <= P50_TARGET,
            note=(
                f"shim p50 {median(shims) * 1e6:.1f} us, native p50 {median(natives) * 1e6:.1f} us"
                f" (pure trio.run {pure * 1e6:.1f} us); bare thread round trip "
                f"{median(bares) * 1e6:.1f} us"
            ),
        ),
        Result(
            question="compat: asyncio request p50 - native p50, in bare thread round trips",
            figure=gap,
            unit="x",
            target=f"<= {GAP_TARGET:g}",
            ok=gap <= GAP_TARGET,
            note=f"runs: {', '.join(f'{g:.2f}' for g in gaps)}",
        ),
        Result(
            question=f"compat: {CALLERS} asyncio callers, requests/s",
            figure=rate,
            unit="req/s",
            target=f">= {RATE_TARGET:,.0f}",
            ok=rate >= RATE_TARGET,
            note=(
                f"runs: {', '.join(f'{r:,.0f}' for r in rates)}; the same with {CALLERS} "
                f"Trio callers: {median([native for _, native in rate_runs]):,.0f} req/s"
            ),
        ),
        Result(
            question=f"compat: {CALLERS} asyncio callers / {CALLERS} Trio callers, requests/s",
            figure=rate_ratio,
            unit="x",
            target=f">= {RATE_RATIO_TARGET:g}",
            ok=rate_ratio >= RATE_RATIO_TARGET,
            note=f"runs: {', '.join(f'{r:.2f}' for r in rate_ratios)}",
        ),
    ]


async def _pure_trio_p50(count: int) -> float:
    mesh, caller = await _started_mesh()
    try:
        await _latencies(caller.peers, count)  # warm-up
        samples = await _latencies(caller.peers, count)
    finally:
        await mesh.stop()
    return percentile(samples, 50)


if __name__ == "__main__":
    from jarvis_trio.bench.results import format_table, machine

    print(machine())
    print(format_table(run(quick=True)))
