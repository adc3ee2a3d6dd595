"""Helpers of the end-to-end tests: nodes started with ``jarvis-trio run`` as real processes,
and ``jarvis-trio`` commands and example programs run the way a user runs them."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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
# Seconds for a condition awaited through such a process (a ``jarvis-trio monitor`` that
# reports each change, or a node's output), its start included.
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


class Lines:
    """The lines a child process writes on a pipe, each read as it is written: a blocking
    wait on the descriptor, bounded. Reads the descriptor itself, so that no line can wait in
    a text buffer that the wait does not see."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self._fd = pipe.fileno()
        self._unread = b""  # read, not yet a whole line

    def next(self, timeout: float) -> str | None:
        """The next line (without its end), or ``None`` after ``timeout`` seconds or at the
        end of the output."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._fd, selectors.EVENT_READ)
            while b"\n" not in self._unread:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    return None
                self._unread += chunk
        line, self._unread = self._unread.split(b"\n", 1)
        return line.decode(errors="replace")

    def find(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first line from now on that ``pattern`` finds, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (line := self.next(deadline - time.monotonic())) is not None:
            found = pattern.search(line)
            if found:
                return found
        return None


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
        self.stdout = Lines(self.process.stdout)

    def wait_ready(self, timeout: float = PROCESS_BOUND) -> Node:
        """Read the banner line (fails with the process's stderr if it never comes)."""
        found = self.stdout.find(BANNER, timeout)
        if found is None:
            self.kill()
            raise AssertionError(f"node {self.name} did not start: {self.stderr()}")
        self.swim = found["swim"]
        self.admin = found["admin"] or ""
        return self

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


class Watch:
    """``jarvis-trio monitor --format json`` on one node's admin endpoint: the node's view
    kept up to date from its event stream -- a snapshot of the members, then each change as
    it happens -- so that a test waits for a state of the cluster as the node sees it
    without asking it again and again.

    ``members`` maps each member to its state. With ``agents``, ``agents`` maps each agent
    id to its ``jarvis-trio agents`` record: one such run once the stream is open gives the
    agents, and the changes streamed since the stream opened, applied in order, bring that
    answer up to date whenever it was taken.
    """

    def __init__(self, admin: str, *options: str, agents: bool = False) -> None:
        self.admin_args = ("--admin", admin, *options)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jarvis_trio", "monitor", *self.admin_args, "--format", "json"],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = Lines(self.process.stdout)
        self.with_agents = agents
        self.members: dict[str, str] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self._listed = False

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def wait(
        self, condition: Callable[[Watch], bool], what: str, timeout: float = CHECK_BOUND
    ) -> None:
        """Return once ``condition(self)`` holds, reading each event as the node sends it."""
        deadline = time.monotonic() + timeout
        while not (self._listed and condition(self)):
            line = self.lines.next(deadline - time.monotonic())
            if line is None:
                self.close()
                assert self.process.stderr is not None
                raise AssertionError(
                    f"{what}: not true within {timeout} s (members {self.members}, agents "
                    f"{sorted(self.agents)}); monitor: {self.process.stderr.read()!r}"
                )
            self._apply(json.loads(line))

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        assert kind != "lost", f"the event stream of {self.admin_args[1]} fell behind"
        if kind == "snapshot":
            self.members = {m["name"]: m["state"] for m in event["members"]}
            if self.with_agents:
                listed = cli("agents", *self.admin_args, "--format", "json")
                assert listed.returncode == 0, listed.stderr
                self.agents = {a["agent_id"]: a for a in json.loads(listed.stdout)}
            self._listed = True
        elif "member" in event:
            self.members[event["member"]["name"]] = event["member"]["state"]
        elif kind == "agent_added" and self.with_agents:
            self.agents[event["agent"]["agent_id"]] = event["agent"]
        elif kind == "agent_removed":
            self.agents.pop(event["agent"]["agent_id"], None)
