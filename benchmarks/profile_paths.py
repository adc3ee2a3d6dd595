"""Loops to profile one hot path at a time under a sampling profiler.

``python -m benchmarks.profile_paths PATH [--seconds S]`` runs, for ``S`` seconds, one of:

* ``cross``: sequential ``PeerClient.request`` to an echo agent of a node in another process
  (``benchmarks.transport_node``);
* ``cross64``: the same from 64 concurrent requesters;
* ``stream``: ``PeerClient.notify`` to a sink agent of that node, back to back;
* ``asyncio``: sequential in-process ``request`` from an ``asyncio.run`` program (the shim);
* ``asyncio64``: the same from 64 concurrent asyncio tasks;
* ``run_asyncio``: sequential ``run_asyncio(noop)`` from an agent of a mesh hosted from asyncio;
* ``local``: sequential in-process ``request`` from Trio.

and prints the number of operations; the asyncio paths also print the CPU time each of the two
threads spent per operation (``time.thread_time``), which a wall-clock profile cannot separate
from waiting for the GIL, and the cross-node paths the CPU per operation of the requesting
node's Trio thread and I/O thread and of the whole far process (from ``/proc``), plus the
requesting process's context switches per operation. Profile it with, for example::

    py-spy record --threads --idle --format raw -o /tmp/cross.txt -- \\
        python -m benchmarks.profile_paths cross
    python -m benchmarks.profile_paths --fold /tmp/cross.txt

(``--fold`` prints where a raw py-spy profile's samples were, per thread.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import resource
import threading
import time
from typing import Any

import trio

from jarvis_trio import CustomAgent, run_asyncio
from jarvis_trio.bench.questions._agents import Caller, Echo
from jarvis_trio.bench.questions.bench_transport import (
    _discoverable,
    _near_config,
    _PeerProcess,
)
from jarvis_trio.compat import TrioHost
from jarvis_trio.mesh import Mesh, open_mesh

PAYLOAD = {"need": "clarification", "entity": "Entity_X", "n": [1, 2, 3]}


def _proc_cpu(stat: str) -> float:
    """utime + stime, in seconds, of a ``/proc/.../stat`` file."""
    with open(stat, encoding="ascii") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _CrossCPU:
    """CPU per operation of the requesting Trio thread, its I/O thread and the far process."""

    def __init__(self, far_pid: int) -> None:
        io = next(t for t in threading.enumerate() if t.name == "jarvis-zmq-near")
        self._stats = (f"/proc/self/task/{io.native_id}/stat", f"/proc/{far_pid}/stat")
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, int, int]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        io, far = (_proc_cpu(stat) for stat in self._stats)
        return time.thread_time(), io, far, usage.ru_nvcsw, usage.ru_nivcsw

    def report(self, done: int) -> str:
        end = self._read()
        trio_s, io_s, far_s, vcsw, ivcsw = (b - a for a, b in zip(self._start, end, strict=True))
        per = 1e6 / max(done, 1)
        return (
            f"CPU per operation: near Trio thread {trio_s * per:.1f} us, near I/O thread "
            f"{io_s * per:.1f} us, far process {far_s * per:.1f} us; near context switches "
            f"per operation {vcsw / max(done, 1):.2f} voluntary, {ivcsw / max(done, 1):.2f} "
            "involuntary"
        )


async def _cross(seconds: float, what: str) -> int:
    far = await trio.to_thread.run_sync(_PeerProcess, "transport_node")
    done = 0
    try:
        words = far.ready.split()
        seed_port, echo_id, sink_id = int(words[1]), words[2], words[3]
        async with open_mesh(
            _near_config("near", seed_port), agents=[Caller], env_file=None, environ={}
        ) as near:
            with trio.fail_after(10):
                await _discoverable(near, "sink")
            peers = near.agents[0].peers
            await peers.request(echo_id, PAYLOAD, timeout=5)
            cpu = _CrossCPU(far.proc.pid)
            deadline = time.perf_counter() + seconds
            if what == "cross":
                while time.perf_counter() < deadline:
                    await peers.request(echo_id, PAYLOAD, timeout=5)
                    done += 1
            elif what == "cross64":

                async def requester() -> None:
                    nonlocal done
                    while time.perf_counter() < deadline:
                        await peers.request(echo_id, PAYLOAD, timeout=5)
                        done += 1

                async with trio.open_nursery() as nursery:
                    for _ in range(64):
                        nursery.start_soon(requester)
            else:
                while time.perf_counter() < deadline:
                    for i in range(1000):
                        await peers.notify(sink_id, {"i": i})
                    done += 1000
            print(cpu.report(done))
    finally:
        await trio.to_thread.run_sync(far.close)
    return done


async def _local_trio(seconds: float) -> int:
    async with open_mesh({"p2p_enabled": False}, agents=[Echo, Caller], env_file=None) as mesh:
        peers = mesh.agents[1].peers
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await peers.request("echo", PAYLOAD)
            done += 1
        return done


class _Looper(CustomAgent):
    """Calls ``run_asyncio(noop)`` back to back until the deadline."""

    role = "looper"

    async def run(self, task: float, context: dict[str, Any]) -> int:
        done = 0
        while time.perf_counter() < task:
            await run_asyncio(_noop)
            done += 1
        return done


async def _noop() -> None:
    return None


async def _local_asyncio(seconds: float, what: str) -> int:
    mesh = Mesh(config={"p2p_enabled": False}, env_file=None, environ={})
    mesh.add(Echo)
    caller = mesh.add(Caller)
    looper = mesh.add(_Looper)
    await mesh.start()
    host = mesh._host_slot.host
    assert isinstance(host, TrioHost)
    done = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await caller.peers.request("echo", PAYLOAD)
            done += 1

    async def trio_thread_time() -> float:
        return time.thread_time()

    try:
        here, there = time.thread_time(), await host.call(trio_thread_time)
        if what == "run_asyncio":
            done = await looper.execute_task(deadline, {})
        else:
            await asyncio.gather(*(one() for _ in range(64 if what == "asyncio64" else 1)))
        here, there = time.thread_time() - here, await host.call(trio_thread_time) - there
    finally:
        await mesh.stop()
    print(
        f"CPU per operation: asyncio thread {here / done * 1e6:.1f} us, "
        f"Trio thread {there / done * 1e6:.1f} us"
    )
    return done


def fold(path: str, top: int = 25) -> None:
    """Per thread of a raw (collapsed) py-spy profile: the functions where the samples were
    (self) and the functions on the stack (inclusive), as shares of that thread's samples.
    Samples taken while importing are left out."""
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    held: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if any("_find_and_load" in frame for frame in frames):
                continue
            thread = frames[0].split(":")[-1].strip()
            clean = [re.sub(r" \(.*?([\w/]+\.py):\d+\)", r" (\1)", f) for f in frames[1:]]
            totals[thread] += int(count)
            own[thread][clean[-1] if clean else "?"] += int(count)
            for frame in set(clean):
                held[thread][frame] += int(count)
    for thread, total in totals.most_common():
        print(f"{thread}: {total} samples")
        for title, table in (("self", own[thread]), ("inclusive", held[thread])):
            print(f"  {title}:")
            for frame, hits in table.most_common(top):
                print(f"    {hits / total:6.1%}  {frame[:120]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "path",
        nargs="?",
        choices=["cross", "cross64", "stream", "asyncio", "asyncio64", "run_asyncio", "local"],
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fold")
    args = parser.parse_args()
    if args.fold:
        fold(args.fold)
        return
    started = time.perf_counter()
    if args.path in ("cross", "cross64", "stream"):
        done = trio.run(_cross, args.seconds, args.path)
    elif args.path == "local":
        done = trio.run(_local_trio, args.seconds)
    else:
        done = asyncio.run(_local_asyncio(args.seconds, args.path))
    elapsed = time.perf_counter() - started
    print(f"{args.path}: {done} operations in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
