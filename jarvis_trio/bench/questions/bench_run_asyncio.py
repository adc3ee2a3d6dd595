"""``run_asyncio``: what does a call from agent code to an asyncio coroutine cost?

Questions (targets from the issue):

* hosted from asyncio, the p50 round trip of ``await run_asyncio(noop)`` from an agent, over
  the p50 of a bare round trip between two plain threads (a one-byte socket-pair echo, the
  least any cross-thread call pays): at most 2x;
* the same under a native ``trio.run``, where the coroutine runs on the loop the node owns
  (reported).

Both are measured in the same run, so the ratio holds on a noisy machine.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import trio

from jarvis_trio.agent import CustomAgent
from jarvis_trio.bench.results import Result, median, percentile, step
from jarvis_trio.compat import run_asyncio
from jarvis_trio.mesh import Mesh

TARGET = 2.0


async def _noop() -> int:
    return 1


class Timer(CustomAgent):
    role = "timer"

    async def run(self, task: int, context: dict[str, Any]) -> list[float]:
        for _ in range(min(200, task)):  # warm-up
            await run_asyncio(_noop)
        samples = []
        for _ in range(task):
            started = time.perf_counter()
            await run_asyncio(_noop)
            samples.append(time.perf_counter() - started)
        return samples


async def _measure(count: int) -> list[float]:
    mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
    timer = mesh.add(Timer)
    await mesh.start()
    try:
        samples: list[float] = await timer.execute_task(count, {})
    finally:
        await mesh.stop()
    return samples


def _bare_round_trip(count: int) -> list[float]:
    """One-byte round trips between two plain threads over a socket pair."""
    left, right = socket.socketpair()

    def echo() -> None:
        while (data := right.recv(1)) != b"q":
            right.send(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            left.send(b"x")
            left.recv(1)
            samples.append(time.perf_counter() - started)
    finally:
        left.send(b"q")
        thread.join(5)
        left.close()
        right.close()
    return samples


def run(quick: bool) -> list[Result]:
    runs, count = (3, 1000) if quick else (7, 5000)
    hosted: list[float] = []
    native: list[float] = []
    bare: list[float] = []
    for i in range(runs):
        step(f"run {i + 1} of {runs}: {count} calls from each host, {count} bare round trips")
        bare.append(percentile(_bare_round_trip(count), 50))
        hosted.append(percentile(asyncio.run(_measure(count)), 50))
        native.append(percentile(trio.run(_measure, count), 50))
    ratios = [h / b for h, b in zip(hosted, bare, strict=True)]
    ratio = median(ratios)
    return [
        Result(
            "run_asyncio hosted from asyncio: p50 / bare thread round trip p50",
            ratio,
            "x",
            f"<= {TARGET:g}",
            ratio <= TARGET,
            f"hosted p50 {median(hosted) * 1e6:.1f} us, bare {median(bare) * 1e6:.1f} us; "
            f"median of {runs} runs of {count}",
        ),
        Result(
            "run_asyncio under trio.run (the node's own loop): p50",
            median(native) * 1e6,
            "us",
            "report",
            True,
            f"{median(native) / median(bare):.2f}x the bare thread round trip",
        ),
    ]
