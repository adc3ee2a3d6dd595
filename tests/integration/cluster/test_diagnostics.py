"""``mesh.get_diagnostics()`` of p2p nodes (JarvisCore's name): isolated, then healthy."""

from __future__ import annotations

import json

import trio

from .conftest import Caller, Echo, NodeFactory, seed_of, wait_discoverable


async def test_diagnostics_say_isolated_then_healthy(start_node: NodeFactory) -> None:
    with trio.fail_after(15):
        async with start_node("a", agents=[Echo]) as a:
            alone = a.get_diagnostics()
            assert alone["status"] == "isolated" and alone["known_peers"] == []
            assert alone["swim"]["status"] == "running"
            async with start_node("b", agents=[Caller], seed_nodes=seed_of(a)) as b:
                await wait_discoverable(b, nodes=1, agents=1)
                await wait_discoverable(a, nodes=1, agents=1)
                diag = b.get_diagnostics()
    json.dumps(diag)  # operators print it or serve it: it must be JSON
    assert diag["status"] == "healthy" and diag["node_id"] == "b"
    assert diag["known_peers"] == ["a"] and diag["swim"]["members"] == {"a": "alive"}
    assert [r["role"] for r in diag["remote_agents"]] == ["echo"]
    assert diag["remote_agents"][0]["node_id"] == "a"
    assert diag["swim"]["counters"]["tx_datagrams"] > 0
