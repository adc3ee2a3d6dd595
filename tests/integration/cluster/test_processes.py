"""Nodes in separate OS processes on 127.0.0.1: join, talk both ways, crash (kill -9),
restart on the same ports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from jarvis_trio.config import MeshConfig
from jarvis_trio.swim import SwimConfig
from jarvis_trio.swim.lifeguard import suspicion_bounds

from .conftest import FAST_SWIM, Caller, Echo, NodeFactory, cluster_of, seed_of, wait_discoverable

SCRIPT = Path(__file__).with_name("node_process.py")


class NodeProcess:
    """One ``node_process.py`` child: its ports, its echo agent, a line protocol."""

    def __init__(self, process: trio.Process, tmp: Path) -> None:
        self.process = process
        self._buffer = b""
        self.swim_port = 0
        self.data_port = 0
        self.echo_id = ""
        self.tmp = tmp

    async def line(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        while b"\n" not in self._buffer:
            chunk = await stdout.receive_some(4096)
            if not chunk:
                raise EOFError("the node process ended")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def command(self, text: str) -> str:
        stdin = self.process.stdin
        assert stdin is not None
        await stdin.send_all(text.encode() + b"\n")
        return await self.line()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)


@asynccontextmanager
async def node_process(tmp_path: Path, name: str, *extra: str) -> AsyncIterator[NodeProcess]:
    argv = [sys.executable, str(SCRIPT), name, "--blob", str(tmp_path / f"blob-{name}"), *extra]
    process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    node = NodeProcess(process, tmp_path)
    try:
        words = (await node.line()).split()
        assert words[0] == "READY", words
        node.swim_port, node.data_port, node.echo_id = int(words[1]), int(words[2]), words[3]
        yield node
    finally:
        with trio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()  # graceful stop: the node leaves
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def detection_bound(nodes: int) -> float:
    """Worst-case SWIM detection time at the test period: a probe period and its timeout,
    then the longest suspicion (no confirmations), plus dissemination slack."""
    config = SwimConfig.from_mesh(MeshConfig.load({**FAST_SWIM}, env_file=None, environ={}))
    _low, high = suspicion_bounds(
        config.suspicion_mult, config.suspicion_max_mult, nodes, config.period
    )
    return 2 * config.period + config.probe_timeout + high + 1.0


def free_udp_and_tcp_port() -> tuple[int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        return udp.getsockname()[1], tcp.getsockname()[1]


async def test_three_nodes_in_three_processes_talk_both_ways(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    with trio.fail_after(30):
        async with start_node("parent", agents=[Echo, Caller]) as parent:
            async with (
                node_process(tmp_path, "child-1", "--seed", seed_of(parent)) as one,
                node_process(tmp_path, "child-2", "--seed", f"127.0.0.1:{one.swim_port}") as two,
            ):
                # each child has an echo and a caller
                await wait_discoverable(parent, nodes=2, agents=4)
                caller = parent.agents[1].peers
                for child, name in ((one, "child-1"), (two, "child-2")):
                    assert await child.command("WAIT 4") == "SEEN 4"
                    reply = await caller.request(child.echo_id, {"to": name}, timeout=5)
                    assert reply == {"echo": {"to": name}, "sender_node": "parent"}
                    answer = json.loads(
                        (await child.command(f"ASK {parent.agents[0].agent_id}")).split(" ", 1)[1]
                    )
                    assert answer["echo"] == {"from_process": name}
                    assert answer["sender_node"] == name
                peers: list[dict[str, Any]] = json.loads(
                    (await two.command("PEERS")).split(" ", 1)[1]
                )
                assert {p["node_id"] for p in peers} == {"parent", "child-1", "child-2"}
                assert {p["location"] for p in peers if p["node_id"] != "child-2"} == {"remote"}
            # both children stopped gracefully: they left
            await wait_discoverable(parent, nodes=0, agents=0)


async def test_kill_9_evicts_the_node_and_fails_its_pending_requests(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    bound = detection_bound(2)
    with trio.fail_after(30):
        async with start_node("survivor", agents=[Caller]) as survivor:
            peers = survivor.agents[0].peers
            async with node_process(tmp_path, "victim", "--seed", seed_of(survivor)) as victim:
                await wait_discoverable(survivor, nodes=1, agents=2)
                outcome: list[object] = []
                async with trio.open_nursery() as nursery:

                    async def hanging() -> None:
                        outcome.append(
                            await peers.request(victim.echo_id, {"hang": True}, timeout=60)
                        )

                    nursery.start_soon(hanging)
                    await trio.testing.wait_all_tasks_blocked()
                    victim.kill9()
                    killed_at = trio.current_time()
                    with trio.fail_after(bound):
                        await wait_discoverable(survivor, nodes=0, agents=0)
                evicted_after = trio.current_time() - killed_at
                assert outcome == [None], "the pending request must fail, not time out"
                assert evicted_after < bound
                assert peers.get_peer(role="echo") is None


async def test_a_node_restarted_on_the_same_ports_is_rediscovered(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    swim_port, data_port = free_udp_and_tcp_port()
    ports = ("--bind-port", str(swim_port), "--data-port", str(data_port))
    with trio.fail_after(40):
        async with start_node("stable", agents=[Caller]) as stable:
            peers = stable.agents[0].peers
            seed = ("--seed", seed_of(stable))
            async with node_process(tmp_path, "phoenix", *seed, *ports) as first:
                await wait_discoverable(stable, nodes=1, agents=2)
                first.kill9()
                await wait_discoverable(stable, nodes=0, agents=0)
            async with node_process(tmp_path, "phoenix", *seed, *ports) as second:
                assert (second.swim_port, second.data_port) == (swim_port, data_port)
                await wait_discoverable(stable, nodes=1, agents=2)
                assert peers.get_peer(role="echo").agent_id == second.echo_id
                reply = await peers.request(second.echo_id, {"again": True}, timeout=5)
                assert reply == {"echo": {"again": True}, "sender_node": "stable"}
                assert cluster_of(stable).node_alive("phoenix")
