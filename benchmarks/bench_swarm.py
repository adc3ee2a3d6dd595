"""The support swarm as a user runs it: wall time and peak memory of the embedded demo, and
how long four processes take from launch until each logs ``mesh stabilised, peers=3``.

Each run is a fresh OS process (``examples/support_swarm.py``); peak memory is that
process's own maximum resident set. Wall time includes a small wrapper interpreter's
start-up (about 20 ms), so it slightly overstates the demo's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import Result, median
from jarvis_trio.testing.ports import free_swim_port
from jarvis_trio.testing.redis_server import RedisServer, find_redis_server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support_swarm.py"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("JC_", "P2P_", "REDIS_", "NEXUS_"))
    }
    env.update(extra)
    return env


# Linux carries a process's peak RSS across exec, so a child forked straight from this
# (possibly large) benchmark process would report this process's size. A small wrapper
# interpreter forks the example instead and reports the example's own peak.
_PEAK_RSS_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def embedded_run() -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one embedded-defaults run."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _PEAK_RSS_WRAPPER,
                sys.executable,
                str(EXAMPLE),
                "--port",
                str(free_swim_port()),
            ],
            cwd=folder,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the embedded demo failed with exit status {done.returncode}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024


def distributed_stabilisation(redis_url: str) -> tuple[float, float]:
    """(seconds from the last of the four nodes running until all four logged
    ``mesh stabilised``, seconds from launching the processes until then)."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--distributed", "--port", str(free_swim_port())],
            cwd=folder,
            env=_env(REDIS_URL=redis_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stderr is not None
        running: list[float] = []
        stabilised: list[float] = []
        for line in child.stderr:
            if "jarvis_trio.mesh: node " in line and " running: " in line:
                running.append(time.perf_counter() - started)
            elif "mesh stabilised, peers=3" in line:
                stabilised.append(time.perf_counter() - started)
        child.wait(timeout=60)
    if child.returncode != 0 or len(running) != 4 or len(stabilised) != 4:
        raise RuntimeError(
            f"the distributed swarm failed (exit {child.returncode}, "
            f"{len(running)} nodes running, {len(stabilised)} stabilised)"
        )
    return stabilised[-1] - running[-1], stabilised[-1]


def run(quick: bool) -> list[Result]:
    runs = 3 if quick else 7
    embedded = [embedded_run() for _ in range(runs)]
    wall = median([w for w, _ in embedded])
    peak = max(m for _, m in embedded)
    results = [
        Result(
            "support swarm, embedded demo wall time",
            wall,
            "s",
            "<= 3 s",
            wall <= 3.0,
            f"median of {runs} runs (original: ~5.1 s; newest release 7-9 s)",
        ),
        Result(
            "support swarm, embedded demo peak memory",
            peak,
            "MB",
            "<= 60 MB",
            peak <= 60.0,
            f"largest max-RSS of {runs} runs (original: 56 MB; newest 146 MB)",
        ),
    ]
    if find_redis_server() is None:
        return results
    with RedisServer(persistent=False) as redis:
        times = [distributed_stabilisation(redis.url) for _ in range(2 if quick else 5)]
    stabilise = median([after_start for after_start, _ in times])
    from_launch = median([after_launch for _, after_launch in times])
    results.append(
        Result(
            "support swarm, 4 processes started -> all stabilised",
            stabilise,
            "s",
            "<= 2 s",
            stabilise <= 2.0,
            f"median of {len(times)} runs; from launch (with interpreter start-up and imports of "
            f"4 processes on this machine's cores): {from_launch:.2f} s",
        )
    )
    return results


if __name__ == "__main__":
    from benchmarks._harness import format_table

    print(format_table(run(quick="--quick" in sys.argv)))
