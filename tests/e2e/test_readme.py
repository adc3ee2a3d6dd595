"""The README's promises, checked: its agent example runs under Trio and under asyncio, its
"Running several nodes" recipe runs as written (node 2's first request succeeds), and its
configuration table lists every configuration key with its variable and default."""

from __future__ import annotations

import os
import random
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jarvis_trio import MeshConfig

from .cli_cluster import python

README = Path(__file__).resolve().parents[2] / "README.md"


def example_program() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## An agent in twenty lines", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its agent example"
    return match.group(1)


@pytest.mark.parametrize("host", ["trio", "asyncio"])
def test_readme_agent_example_runs(tmp_path: Path, host: str) -> None:
    program = example_program()
    assert len(program.strip().splitlines()) <= 25
    if host == "asyncio":
        program = program.replace("trio.run(main)", "import asyncio\nasyncio.run(main())")
    script = tmp_path / "agent.py"
    script.write_text(program, encoding="utf-8")
    result = python(str(script), cwd=tmp_path, env=None, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "{'summary': '3 rows look fine'}" in result.stdout


def test_configuration_table_matches_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {
        m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| `?(\w+)`? \|", table, re.M)
    }
    documented = MeshConfig.documented_keys()
    assert set(rows) == set(documented)
    for key, (env, _doc) in documented.items():
        assert rows[key] == env, key


def several_nodes_recipe() -> tuple[str, list[str]]:
    """The program and the two shell commands of "Running several nodes"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Running several nodes", 1)[1].split("\n## ", 1)[0]
    program = re.search(r"```python\n(.*?)```", section, re.S)
    shell = re.search(r"```sh\n(.*?)```", section, re.S)
    assert program and shell, "the README lost its several-nodes recipe"
    commands = [line for line in shell.group(1).splitlines() if line and line[0] != "#"]
    return program.group(1), commands


def free_swim_ports(count: int) -> list[int]:
    """SWIM ports whose UDP port and default data port (+ 1000, TCP) are both free now."""
    rng = random.Random()
    found: list[int] = []
    while len(found) < count:
        port = rng.randrange(20_000, 40_000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
        if port not in found:
            found.append(port)
    return found


def command_line(command: str, ports: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``VAR=value ... python file args`` as argv and environment, on this run's ports."""
    for documented, free in ports.items():
        command = command.replace(documented, free)
    words = shlex.split(command)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JC_", "P2P_"))}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[0] == "python", command
    return [sys.executable, *words[1:]], env


@pytest.mark.timeout(90)
def test_readme_several_nodes_recipe_node_2s_first_request_succeeds(tmp_path: Path) -> None:
    program, commands = several_nodes_recipe()
    assert len(commands) == 2, commands
    (tmp_path / "my_agents.py").write_text(program, encoding="utf-8")
    first, second = free_swim_ports(2)
    ports = {"7946": str(first), "7947": str(second)}
    argv1, env1 = command_line(commands[0], ports)
    argv2, env2 = command_line(commands[1], ports)
    node1 = subprocess.Popen(
        argv1, cwd=tmp_path, env=env1, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert node1.stdout is not None
        assert node1.stdout.readline() == "analyst ready\n"
        node2 = subprocess.run(
            argv2, cwd=tmp_path, env=env2, capture_output=True, text=True, timeout=60, check=False
        )
        assert node2.returncode == 0, node2.stderr
        assert node2.stdout == "{'summary': '3 rows look fine'}\n"
        assert node2.stderr == ""  # not one warning
    finally:
        node1.terminate()
        try:
            node1.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node1.kill()
            node1.wait()
