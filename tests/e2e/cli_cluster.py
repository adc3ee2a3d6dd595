"""Helpers of the end-to-end tests: nodes started with ``jarvis-trio run`` as real processes,
and ``jarvis-trio`` commands and example programs run the way a user runs them."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BANNER = re.compile(
    r"node (?P<name>\S+) running \d+ agent\(s\), swim (?P<swim>\S+), data \d+"
    r"(?:, admin http://(?P<admin>\S+))?"
)
# SWIM 5x faster than the LAN profile: failures are detected in about a second
FAST_SWIM = {"JC_SWIM_PERIOD": "0.2", "JC_SWIM_PROBE_TIMEOUT": "0.1"}
# Seconds a step that starts a Python process may take: such a process spends about a second
# importing the library on an idle machine and over ten on a loaded one (measured with two
# cores shared by a test run and CPU burners), before it does anything the test is about.
PROCESS_BOUND = 120.0
# Seconds for a condition checked with such processes (each check is one ``jarvis-trio`` run).
CHECK_BOUND = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any jarvis_trio setting, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JC_", "P2P_", "REDIS_", "NEXUS_", "OTEL_", "AWS_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def python(
    *args: str, cwd: Path, env: dict[str, str] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``cwd``, its output captured (``env``: :func:`clean_env` if none)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = PROCESS_BOUND
) -> subprocess.CompletedProcess[str]:
    """``jarvis-trio ARGS`` (as ``python -m jarvis_trio``), from the repository root."""
    return python("-m", "jarvis_trio", *args, cwd=ROOT, env=env, timeout=timeout)


class Node:
    """A node process started with ``jarvis-trio run``; its banner gives its addresses."""

    def __init__(
        self, name: str, agents: list[str], *args: str, env: dict[str, str], cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jarvis_trio", "run", *agents, "--name", name, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.swim = ""
        self.admin = ""

    def wait_ready(self, timeout: float = PROCESS_BOUND) -> Node:
        """Read the banner line (fails with the process's stderr if it never comes)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = self.process.stdout.readline()
                if not line:
                    break
                found = BANNER.search(line)
                if found:
                    self.swim = found["swim"]
                    self.admin = found["admin"] or ""
                    return self
        self.kill()
        raise AssertionError(f"node {self.name} did not start: {self.stderr()}")

    def stderr(self) -> str:
        if self.process.poll() is None:
            self.kill()
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = PROCESS_BOUND) -> int:
        """SIGTERM, then the exit status (the node leaves the cluster first)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def wait_for(check: Any, what: str, timeout: float = CHECK_BOUND) -> Any:
    """Run ``check()`` (a CLI call) until it returns something true; bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)  # between two subprocess runs of the CLI, not to let anything settle
    raise AssertionError(f"{what}: not true within {timeout} s (last: {last!r})")
