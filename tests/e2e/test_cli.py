"""``jarvis-trio`` as an operator uses it: a three-process cluster started with ``jarvis-trio
run``, inspected with ``members`` / ``agents``, asked with ``request``, one node killed."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from jarvis_trio.cli import COMMANDS
from jarvis_trio.testing.ports import free_port, free_swim_port

from .cli_cluster import FAST_SWIM, Node, Watch, clean_env, cli

AGENTS = "examples.cluster_agents"
# three node processes and a dozen CLI runs: minutes on a loaded machine, each step bounded
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def cluster() -> Iterator[list[Node]]:
    env = clean_env(**FAST_SWIM)
    first = Node(
        "n1",
        [f"{AGENTS}:Gateway", f"{AGENTS}:Billing"],
        "--port",
        str(free_swim_port()),
        "--admin-port",
        "0",
        env=env,
    ).wait_ready()
    others = [
        Node(
            name,
            [f"{AGENTS}:{cls}"],
            "--port",
            str(free_swim_port()),
            "--seed",
            first.swim,
            env=env,
        )
        for name, cls in (("n2", "Technical"), ("n3", "Billing"))
    ]
    nodes = [first, *(node.wait_ready() for node in others)]
    yield nodes
    for node in nodes:
        node.kill()


def members(admin: str) -> dict[str, str]:
    done = cli("members", "--admin", admin, "--format", "json")
    assert done.returncode == 0, done.stderr
    return {m["name"]: m["state"] for m in json.loads(done.stdout)}


def test_a_three_process_cluster_seen_asked_and_one_node_killed(cluster: list[Node]) -> None:
    n1, n2, n3 = cluster
    alive = {"n1": "alive", "n2": "alive", "n3": "alive"}
    # n1's view of the cluster, from its event stream: each wait below reads the changes
    with Watch(n1.admin, agents=True) as seen:
        seen.wait(lambda view: view.members == alive, "three members alive")
        assert members(n1.admin) == alive

        # members are alive before all their agent records have arrived: wait for the four
        seen.wait(lambda view: len(view.agents) == 4, "4 agents known")
        listed = cli("agents", "--admin", n1.admin, "--format", "json")
        assert listed.returncode == 0, listed.stderr
        where = sorted((a["role"], a["node_id"], a["location"]) for a in json.loads(listed.stdout))
        assert where == [
            ("billing", "n1", "local"),
            ("billing", "n3", "remote"),
            ("gateway", "n1", "local"),
            ("technical", "n2", "remote"),
        ]
        table = cli("members", "--admin", n1.admin, "--status", "alive", "--role", "technical")
        assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == [
            "Node",
            "Address",
            "Status",
        ]
        assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["n2"]

        # gateway (n1) -> technical (n2) -> billing: a request that crosses nodes
        asked = cli("request", "gateway", '{"ticket": 7}', "--seed", n1.swim, "--timeout", "60")
        assert asked.returncode == 0, asked.stderr
        reply = json.loads(asked.stdout)
        assert reply["node"] == "n2" and reply["billing"]["ticket"] == 7

        n3.process.send_signal(signal.SIGKILL)
        started = time.monotonic()
        seen.wait(lambda view: view.members.get("n3") == "dead", "n3 declared failed")
        failed = cli("members", "--admin", n1.admin, "--status", "failed", "--format", "json")
        assert [m["name"] for m in json.loads(failed.stdout)] == ["n3"]
        print(f"n3 declared failed {time.monotonic() - started:.2f} s after SIGKILL")

        assert n2.terminate() == 0  # SIGTERM: leaves the cluster first
        seen.wait(lambda view: view.members.get("n2") == "left", "n2 left")
        assert members(n1.admin).get("n2") == "left"
        assert n1.terminate() == 0


def test_failures_are_one_line_on_stderr_and_a_nonzero_status() -> None:
    env = clean_env()
    closed = free_port()
    cases = [
        ("request", "gateway", "{not json", "--seed", "127.0.0.1:9"),
        ("request", "gateway", "[1, 2]", "--seed", "127.0.0.1:9"),
        ("members", "--admin", f"127.0.0.1:{closed}"),
        ("stats", "--admin", "nowhere"),
        ("members",),
        ("run", "no_such_module:Agent"),
        ("members", "--format", "yaml", "--admin", f"127.0.0.1:{closed}"),
    ]
    for args in cases:
        done = cli(*args, env=env)
        assert done.returncode != 0, args
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("jarvis-trio: error: "), (args, done.stderr)
        assert done.stdout == "", args
    refused = cli("members", "--admin", f"127.0.0.1:{closed}", env=env)
    assert "connection refused" in refused.stderr
    bad = cli("request", "gateway", "{not json", "--seed", "127.0.0.1:9", env=env)
    assert "MESSAGE is not valid JSON" in bad.stderr


def test_every_command_has_help_with_an_example() -> None:
    from click.testing import CliRunner

    from jarvis_trio.cli import cli as group

    runner = CliRunner()
    top = runner.invoke(group, ["--help"])
    assert top.exit_code == 0 and "Example:" in top.output
    for name in COMMANDS:
        shown = runner.invoke(group, [name, "--help"])
        assert shown.exit_code == 0, name
        assert "Example:" in shown.output and f"jarvis-trio {name}" in shown.output, name
