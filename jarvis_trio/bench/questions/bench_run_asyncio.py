"""``run_asyncio``: what does a call from agent code to an asyncio coroutine cost?

Questions (targets from the issue):

* hosted from asyncio, the p50 round trip of ``await run_asyncio(noop)`` from an agent, over
  the p50 of a bare round trip between two plain threads (a one-byte socket-pair echo, the
  least any cross-thread call pays): at most 2x;
* the same under a native ``trio.run``, where the coroutine runs on the loop the node owns
  (reported).

Calls and bare round trips alternate in blocks inside each run, so that the ratio compares
figures taken under the same machine load.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.bench.questions._threads import thread_echo
from jarvis_trio.bench.results import Result, median, percentile, step
from jarvis_trio.compat import run_asyncio
from jarvis_trio.mesh import Mesh

TARGET = 2.0
BLOCK = 200
"""Calls (and bare round trips) per block; blocks of the two alternate."""


async def _noop() -> int:
    return 1


class Timer(CustomAgent):
    role = "timer"

    async def run(self, task: int, context: dict[str, Any]) -> list[float]:
        samples = []
        for _ in range(task):
            started = time.perf_counter()
            await run_asyncio(_noop)
            samples.append(time.perf_counter() - started)
        return samples


async def _measure(count: int) -> tuple[list[float], list[float]]:
    """``count`` timed calls and ``count`` bare round trips, in alternating blocks."""
    mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
    timer = mesh.add(Timer)
    calls: list[float] = []
    bare: list[float] = []
    await mesh.start()
    try:
        with thread_echo() as echo:
            await timer.execute_task(BLOCK, {})  # warm-up
            echo.round_trips(BLOCK)
            for _ in range(max(1, count // BLOCK)):
                calls += await timer.execute_task(BLOCK, {})
                bare += echo.round_trips(BLOCK)
    finally:
        await mesh.stop()
    return calls, bare


def run(quick: bool) -> list[Result]:
    runs, count = (3, 1000) if quick else (7, 5000)
    hosted: list[float] = []
    native: list[float] = []
    hosted_ratios: list[float] = []
    native_ratios: list[float] = []
    for i in range(runs):
        step(f"run {i + 1} of {runs}: {count} calls from each host, bare round trips between")
        calls, bare = asyncio.run(_measure(count))
        hosted.append(percentile(calls, 50))
        hosted_ratios.append(hosted[-1] / percentile(bare, 50))
        calls, bare = trio.run(_measure, count)
        native.append(percentile(calls, 50))
        native_ratios.append(native[-1] / percentile(bare, 50))
    ratio = median(hosted_ratios)
    return [
        Result(
            "run_asyncio hosted from asyncio: p50 / bare thread round trip p50",
            ratio,
            "x",
            f"<= {TARGET:g}",
            ratio <= TARGET,
            f"hosted p50 {median(hosted) * 1e6:.1f} us; ratios of {runs} runs of {count}: "
            + ", ".join(f"{r:.2f}" for r in hosted_ratios),
        ),
        Result(
            "run_asyncio under trio.run (the node's own loop): p50",
            median(native) * 1e6,
            "us",
            "report",
            True,
            f"{median(native_ratios):.2f}x the bare thread round trip measured alongside",
        ),
    ]
