"""Joining is part of starting: ``start()`` returns with the cluster's agents reachable, a
silent seed is reported once, ``join_required`` makes it an error, a name in use is refused.

The joining node runs in its own OS process (``join_process.py``), written as the
documentation shows; the nodes it joins run in this one. Every socket is real, on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from .conftest import Caller, Echo, NodeFactory, cluster_of, seed_of

SCRIPT = Path(__file__).with_name("join_process.py")


async def run_joiner(tmp_path: Path, *args: str) -> tuple[dict[str, Any], list[str]]:
    """Run ``join_process.py`` to its end: (its JSON outcome, its WARNING+ log lines)."""
    argv = [sys.executable, str(SCRIPT), *args, "--blob", str(tmp_path / "blob-joiner")]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no outcome (exit {done.returncode}); stderr:\n{stderr}"
    logged = [line for line in stderr.splitlines() if line.split(" ", 1)[0] in _LEVELS]
    return json.loads(lines[-1]), logged


_LEVELS = {"WARNING", "ERROR", "CRITICAL"}


def silent_udp_port() -> socket.socket:
    """A bound UDP socket that never answers: a seed that is there and says nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("host", ["trio", "asyncio"])
async def test_right_after_start_the_seeds_agents_are_discoverable_and_answer(
    start_node: NodeFactory, tmp_path: Path, host: str
) -> None:
    with trio.fail_after(30):
        async with start_node("seed", agents=[Echo, Echo, Caller]) as seed:
            echoes = [agent.agent_id for agent in seed.agents[:2]]
            outcome, logged = await run_joiner(tmp_path, host, "joiner", seed_of(seed))
    assert outcome["found"] == echoes
    assert outcome["joined"] is True
    reply = outcome["reply"]
    assert reply["echo"] == {"from": "joiner"} and reply["sender_node"] == "joiner"
    assert logged == []


async def test_a_silent_seed_gives_one_warning_and_start_returns_alone(tmp_path: Path) -> None:
    with silent_udp_port() as silent, trio.fail_after(30):
        seed = f"127.0.0.1:{silent.getsockname()[1]}"
        outcome, logged = await run_joiner(tmp_path, "trio", "loner", seed, "--join-timeout", "1.0")
    assert 1.0 <= outcome["start_s"] <= 2.0
    assert (outcome["joined"], outcome["found"], outcome["reply"]) == (False, [], None)
    (warning,) = logged
    assert warning.startswith("WARNING jarvis_trio.cluster: node loner could not join")
    assert f"no answer from seed(s) {seed} within 1 s" in warning
    assert "runs alone and keeps trying" in warning


async def test_join_required_turns_a_silent_seed_into_an_error_naming_it(
    tmp_path: Path,
) -> None:
    with silent_udp_port() as silent, trio.fail_after(30):
        seeds = f"127.0.0.1:{silent.getsockname()[1]},127.0.0.1:9"
        outcome, _ = await run_joiner(
            tmp_path, "asyncio", "needy", seeds, "--join-timeout", "0.5", "--join-required"
        )
    assert outcome["error"] == "JoinError"
    assert f"no answer from seed(s) {seeds.replace(',', ', ')} within 0.5 s" in outcome["message"]
    assert outcome["message"].startswith("node needy could not join the cluster")


@pytest.mark.parametrize("through", ["the holder", "another member"])
async def test_a_second_node_with_a_name_in_use_refuses_to_start(
    start_node: NodeFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    through: str,
) -> None:
    caplog.set_level(logging.WARNING, "jarvis_trio.cluster")
    with trio.fail_after(30):
        async with (
            start_node("twin", agents=[Echo]) as holder,
            start_node("other", agents=[Caller], seed_nodes=seed_of(holder)) as other,
        ):
            seed = seed_of(holder) if through == "the holder" else seed_of(other)
            epoch_before = cluster_of(holder).swim.protocol.epoch
            outcome, logged = await run_joiner(tmp_path, "trio", "twin", seed)
            assert outcome["error"] == "NodeNameConflict"
            assert outcome["message"] == (
                f"node name 'twin' is already held by a live member at {seed_of(holder)}: "
                "give this node another node_name (JC_NODE_NAME)"
            )
            assert logged == []  # the error says it all
            # the live member warned, named the other address, and kept its name and agents
            keeper = cluster_of(holder)
            await keeper.wait_until(lambda: keeper.stats()["name_conflicts"] >= 1)
            (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert warning.startswith("node name twin is also used by a live node at 127.0.0.1:")
            # no incarnation war: the keeper never moved its name on (a refutation of a
            # suspicion, which a loaded machine can cause, is not one)
            keeper_stats = keeper.swim.protocol.stats
            assert keeper.swim.protocol.epoch == epoch_before
            assert keeper_stats["epoch_moves"] == 0 and keeper_stats["name_takeovers"] == 0
            assert cluster_of(other).node_alive("twin")
            echo = holder.agents[0].agent_id
            reply = await other.agents[0].peers.request(echo, {"still": "here"}, timeout=5)
            assert reply is not None and reply["echo"] == {"still": "here"}


async def test_a_node_past_its_join_timeout_keeps_trying_and_joins_later(
    start_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "jarvis_trio.cluster")
    with trio.fail_after(20):
        with silent_udp_port() as silent:
            port = silent.getsockname()[1]
            late = start_node(
                "late", agents=[Caller], seed_nodes=f"127.0.0.1:{port}", join_timeout=0.3
            )
            async with late as mesh:
                assert not mesh.joined and cluster_of(mesh).live_nodes() == []
                silent.close()  # the seed comes up on that very port
                async with start_node("seed", agents=[Echo], bind_port=port, data_port=0):
                    await cluster_of(mesh).wait_joined()
                    assert mesh.joined
                    assert mesh.agents[0].peers.get_peer(role="echo") is not None
    messages = [r.getMessage() for r in caplog.records if r.name == "jarvis_trio.cluster"]
    assert any(m.startswith("node late could not join the cluster") for m in messages)
    assert any(m.startswith("node late joined the cluster in") for m in messages)


async def test_a_lone_node_is_joined_at_once(start_node: NodeFactory) -> None:
    with trio.fail_after(10):
        async with start_node("alone", agents=[Caller]) as mesh:
            assert mesh.joined and mesh.ready and cluster_of(mesh).joined
            assert cluster_of(mesh).stats()["joined"] == 1


def test_join_process_script_stays_importable() -> None:
    # the script is run as a program by these tests; a syntax slip would only show as "no
    # outcome" there, so compile it here for a clear failure
    subprocess.run([sys.executable, "-m", "py_compile", str(SCRIPT)], check=True)
