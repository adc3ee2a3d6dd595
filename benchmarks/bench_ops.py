"""What operating a node costs: per-role metrics, the OpenTelemetry API without an SDK, the
``jarvis-trio members`` command, and an admin endpoint held by idle connections.

Questions (targets from the issue):

* in-process sequential ``request`` with the per-role accounting (what ``/metrics`` reads)
  on, against off: ≥ 95 % of the off figure;
* the same with the OpenTelemetry API installed but no SDK configured, against the API
  absent (each run in a fresh interpreter, the absent one with ``opentelemetry`` blocked in
  ``sys.modules``): ≥ 97 %;
* ``jarvis-trio members`` against a running node, interpreter start included: ≤ 1 s wall;
* 200 idle connections held on the admin endpoint: the node's request latency unchanged
  within noise, memory bounded (the endpoint serves at most 64 connections; the rest are
  answered 503 and closed).

Compared figures are measured alternately, several runs each, as requests per CPU-second of
the process (the machine is shared: wall-clock rates swing with the load of other processes),
and reported as the ratio of medians.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

from jarvis_trio.bench.questions._agents import Caller, Echo
from jarvis_trio.bench.results import Result, median, percentile, step
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.testing.ports import free_swim_port


async def _timed_requests(mesh: Mesh, count: int) -> tuple[list[float], float]:
    """Latencies (µs) of ``count`` sequential requests after a warm-up, and the CPU seconds
    the process spent on them."""
    caller = next(a for a in mesh.agents if a.role == "caller")
    request = caller.peers.request
    for n in range(min(1000, count)):  # warm-up
        await request("echo", {"n": n})
    clock = time.perf_counter_ns
    samples = [0.0] * count
    gc.collect()
    cpu = time.process_time()
    for n in range(count):
        t0 = clock()
        await request("echo", {"n": n})
        samples[n] = (clock() - t0) / 1000
    return samples, time.process_time() - cpu


def sequential(count: int, folder: str, prepare: Callable[[Mesh], None]) -> float:
    """Requests per CPU-second of this process for ``count`` back-to-back requests on one node
    after ``prepare(mesh)``: on a shared machine the CPU time a process was given is a much
    steadier measure of its own cost than the wall clock."""
    out: list[float] = []

    async def main() -> None:
        config = {"node_name": "bench", "blob_storage_path": folder}
        async with open_mesh(config, agents=[Echo, Caller], env_file=None, environ={}) as mesh:
            prepare(mesh)
            _, cpu = await _timed_requests(mesh, count)
            out.append(count / cpu)

    trio.run(main)
    return out[0]


def _metrics(enabled: bool) -> Callable[[Mesh], None]:
    def prepare(mesh: Mesh) -> None:
        mesh.router.traffic.enabled = enabled

    return prepare


def _no_prepare(mesh: Mesh) -> None:
    return None


def alternate(
    runs: int, first: Callable[[], float], second: Callable[[], float]
) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        a.append(first())
        b.append(second())
    return a, b


def in_process(count: int, folder: str, *, otel_api: bool) -> float:
    """req/s of :func:`sequential` in a fresh interpreter, with the OpenTelemetry API
    importable or made absent (``sys.modules`` says it is not installed)."""
    code = (
        "import sys\n"
        + ("" if otel_api else "sys.modules['opentelemetry'] = None\n")
        + "from benchmarks.bench_ops import sequential, _no_prepare\n"
        + f"print(sequential({count}, {folder!r}, _no_prepare))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return float(done.stdout.strip())


def members_wall_time(runs: int, folder: str) -> list[float]:
    """Seconds of ``python -m jarvis_trio members`` against a node started for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JC_", "P2P_", "REDIS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["JC_BLOB_STORAGE_PATH"] = folder
    node = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "jarvis_trio",
                "run",
                "jarvis_trio.bench.questions._agents:Echo",
            ),
            *("--port", str(free_swim_port()), "--admin-port", "0", "--name", "bench-node"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert node.stdout is not None
        banner = node.stdout.readline()
        found = re.search(r"admin http://(\S+)", banner)
        if found is None:
            raise RuntimeError(f"the node did not start: {banner!r}")
        admin = found[1]
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "jarvis_trio", "members", "--admin", admin],
                env=env,
                capture_output=True,
                check=False,
            )
            times.append(time.perf_counter() - began)
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode())
        return times
    finally:
        node.terminate()
        node.wait(30)


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def idle_connections(count: int, requests: int, rounds: int, folder: str) -> dict[str, Any]:
    """Request latency (p50, p99 µs) without and with ``count`` idle connections held on the
    admin endpoint, alternately; RSS before and after opening them; what the endpoint did."""
    out: dict[str, Any] = {}

    async def main() -> None:
        config = {"node_name": "bench", "blob_storage_path": folder, "admin_port": 0}
        async with open_mesh(config, agents=[Echo, Caller], env_file=None, environ={}) as mesh:
            assert mesh.admin_address is not None
            host, port = mesh.admin_address
            quiet: list[float] = []
            held: list[float] = []
            rss_before = rss_after = 0
            for _ in range(rounds):
                quiet += (await _timed_requests(mesh, requests))[0]
                gc.collect()
                rss_before = _rss_kib()
                streams = [await trio.open_tcp_stream(host, port) for _ in range(count)]
                await trio.sleep(0.2)  # the server accepts (or refuses) them in its own tasks
                held += (await _timed_requests(mesh, requests))[0]
                gc.collect()
                rss_after = _rss_kib()
                for stream in streams:
                    await stream.aclose()
            out["quiet"] = (percentile(quiet, 50), percentile(quiet, 99))
            out["held"] = (percentile(held, 50), percentile(held, 99))
            out["rss"] = (rss_before, rss_after)

    trio.run(main)
    return out


def run(quick: bool) -> list[Result]:
    """Answer the questions; quick mode keeps the module around a minute."""
    runs = 5 if quick else 9
    count = 20_000 if quick else 50_000  # 5,000 requests (under 0.1 s) were mostly noise
    with tempfile.TemporaryDirectory() as folder:
        step(f"metrics on / off, {runs} x {count:,} requests each")
        on, off = alternate(
            runs,
            lambda: sequential(count, folder, _metrics(True)),
            lambda: sequential(count, folder, _metrics(False)),
        )
        step(f"OpenTelemetry API without SDK / absent, {runs} x {count:,} requests each")
        api, absent = alternate(
            runs,
            lambda: in_process(count, folder, otel_api=True),
            lambda: in_process(count, folder, otel_api=False),
        )
        step("jarvis-trio members against a running node")
        walls = members_wall_time(5 if quick else 11, folder)
        step("200 idle connections on the admin endpoint")
        idle = idle_connections(200, 2_000 if quick else 10_000, 2 if quick else 4, folder)
    metrics_ratio = median(on) / median(off)
    otel_ratio = median(api) / median(absent)
    wall = median(walls)
    quiet_p50, quiet_p99 = idle["quiet"]
    held_p50, held_p99 = idle["held"]
    rss_before, rss_after = idle["rss"]
    latency_ratio = held_p50 / quiet_p50
    return [
        Result(
            "ops: request with metrics on vs off",
            metrics_ratio,
            "ratio to off",
            "≥ 0.95",
            metrics_ratio >= 0.95,
            f"on {median(on):,.0f}, off {median(off):,.0f} req per CPU-second, median of {runs}",
        ),
        Result(
            "ops: request with the OTel API, no SDK",
            otel_ratio,
            "ratio to absent",
            "≥ 0.97",
            otel_ratio >= 0.97,
            f"API {median(api):,.0f}, absent {median(absent):,.0f} req per CPU-second, "
            f"median of {runs}",
        ),
        Result(
            "ops: jarvis-trio members wall time",
            wall,
            "s",
            "≤ 1 s",
            wall <= 1.0,
            f"median of {len(walls)}, interpreter start included; max {max(walls):.2f} s",
        ),
        Result(
            "ops: request p50 with 200 idle admin connections",
            latency_ratio,
            "ratio to quiet",
            "≈ 1 (noise)",
            latency_ratio <= 1.15,
            f"p50 {quiet_p50:.1f} → {held_p50:.1f} µs, p99 {quiet_p99:.1f} → {held_p99:.1f} µs; "
            f"RSS {rss_before / 1024:.1f} → {rss_after / 1024:.1f} MiB",
        ),
    ]
