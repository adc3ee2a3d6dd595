"""The admin endpoint of real nodes (UDP + ZeroMQ on 127.0.0.1, a real HTTP server served from
the node's nursery), asked with a real HTTP client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from jarvis_trio.agent import CustomAgent
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.peers.messages import IncomingMessage
from jarvis_trio.testing import free_swim_port

FAST = {"swim_period": 0.1, "swim_probe_timeout": 0.05}
TOKEN = "an-admin-token-of-some-length"


class Echo(CustomAgent):
    role = "echo"
    capabilities = ["echo"]

    async def on_peer_request(self, message: IncomingMessage) -> dict[str, Any]:
        if message.data.get("slow"):
            await trio.sleep(10)
        return {"echo": message.data}


class Caller(CustomAgent):
    role = "caller"

    async def run(self) -> None:
        return None


@asynccontextmanager
async def node(
    tmp_path: Path, name: str, agents: list[type[CustomAgent]], **extra: Any
) -> AsyncIterator[tuple[Mesh, httpx.AsyncClient]]:
    config: dict[str, Any] = {
        "p2p_enabled": True,
        "bind_port": 0,
        "node_name": name,
        "admin_port": 0,
        "blob_storage_path": str(tmp_path / name),
        **FAST,
        **extra,
    }
    async with open_mesh(config, agents=agents, env_file=None, environ={}) as mesh:
        assert mesh.admin_address is not None
        host, port = mesh.admin_address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
            yield mesh, client


def seed_of(mesh: Mesh) -> str:
    cluster = mesh.cluster_node
    assert cluster is not None
    host, port = cluster.swim.address[:2]
    return f"{host}:{port}"


async def test_readyz_is_503_until_the_node_joined_then_200(tmp_path: Path) -> None:
    port = free_swim_port()
    with trio.fail_after(15):
        async with node(tmp_path, "early", [Echo], seed_nodes=f"127.0.0.1:{port}") as (a, web):
            assert (await web.get("/healthz")).status_code == 200
            before = await web.get("/readyz")
            assert before.status_code == 503
            assert before.json() == {
                "ready": False,
                "node": "early",
                "state": "running",
                "joined": False,
            }
            async with node(tmp_path, "seed", [Echo], bind_port=port):
                cluster = a.cluster_node
                assert cluster is not None
                await cluster.wait_until(lambda: a.joined)
                after = await web.get("/readyz")
                assert after.status_code == 200
                assert after.json()["joined"] is True


async def test_a_token_guards_every_route_but_the_probes(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with node(tmp_path, "guarded", [Echo], admin_token=TOKEN) as (_, web):
            assert (await web.get("/healthz")).status_code == 200
            assert (await web.get("/readyz")).status_code == 200
            for route in ("/members", "/agents", "/stats", "/metrics", "/events"):
                refused = await web.get(route)
                assert refused.status_code == 401, route
                assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await web.get("/members", headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401
            good = await web.get("/members", headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 200 and good.json()[0]["name"] == "guarded"
            stats = (await web.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"})).json()
            assert stats["admin"]["unauthorized"] == 6


async def test_the_cluster_key_is_the_token_when_no_admin_token_is_set(tmp_path: Path) -> None:
    key = "a-cluster-secret-of-32-characters"
    with trio.fail_after(10):
        async with node(tmp_path, "keyed", [Echo], cluster_key=key) as (_, web):
            assert (await web.get("/agents")).status_code == 401
            assert (await web.get("/agents", headers={"Authorization": f"Bearer {key}"})).is_success


async def test_members_agents_stats_metrics_and_events_of_a_two_node_cluster(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with node(tmp_path, "a", [Echo, Echo]) as (a, web_a):
            events = web_a.stream("GET", "/events")
            async with events as stream:
                lines = stream.aiter_lines()
                snapshot = json.loads(await lines.__anext__())
                assert snapshot["event"] == "snapshot" and snapshot["members"][0]["name"] == "a"
                async with node(tmp_path, "b", [Caller], seed_nodes=seed_of(a)) as (b, web_b):
                    caller = b.agents[0]
                    assert await caller.peers.wait_for_peers(2, role="echo", timeout=10)
                    while True:  # the stream tells of b joining
                        event = json.loads(await lines.__anext__())
                        if event["event"] == "joined":
                            assert event["member"]["name"] == "b"
                            break

                    members = {m["name"]: m for m in (await web_b.get("/members")).json()}
                    assert {n: m["state"] for n, m in members.items()} == {
                        "a": "alive",
                        "b": "alive",
                    }
                    assert members["a"]["agents"] == 2 and members["b"]["local"] is True
                    agents = (await web_b.get("/agents")).json()
                    assert sorted((x["role"], x["location"], x["node_id"]) for x in agents) == [
                        ("caller", "local", "b"),
                        ("echo", "remote", "a"),
                        ("echo", "remote", "a"),
                    ]

                    # traffic of known shape: 5 answered, 2 timed out, 1 unresolved, 3 notified
                    for n in range(5):
                        assert await caller.peers.request("echo", {"n": n}, timeout=5) is not None
                    for _ in range(2):
                        assert await caller.peers.request("echo", {"slow": 1}, timeout=0.05) is None
                    assert await caller.peers.request("nobody", {}, timeout=1) is None
                    for _ in range(3):
                        assert await caller.peers.notify("echo", {"note": 1})
                    echo_id = next(a["agent_id"] for a in agents if a["role"] == "echo")
                    caller.mailbox.send(echo_id, {"mail": 1})  # on node a: b only sent it

                    stats = (await web_b.get("/stats")).json()
                    echo = stats["requests"]["by_role"]["echo"]
                    assert (echo["sent"], echo["answered"], echo["timed_out"]) == (7, 5, 2)
                    assert stats["messages"]["request_failed"] == 1  # the unresolved target
                    assert stats["members"] == {"alive": 2, "suspect": 0, "dead": 0, "left": 0}

                    b_cluster = b.cluster_node
                    assert b_cluster is not None
                    rtt = b_cluster.swim.probe_rtt
                    await b_cluster.swim.wait_until(lambda: rtt.count > 0)  # b probed a once
                    scraped = await web_b.get("/metrics")
                    assert scraped.status_code == 200
                    assert scraped.headers["content-type"].startswith("text/plain")
                    samples = {
                        (s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(scraped.text)
                        for s in family.samples
                    }
                    role = (("role", "echo"),)
                    assert samples[("jarvis_requests_sent_total", role)] == 7
                    assert samples[("jarvis_requests_answered_total", role)] == 5
                    assert samples[("jarvis_requests_timed_out_total", role)] == 2
                    assert samples[("jarvis_requests_failed_total", role)] == 0
                    assert samples[("jarvis_notifies_total", role)] == 3
                    assert samples[("jarvis_request_duration_seconds_count", role)] == 5
                    assert samples[("jarvis_request_failed_total", ())] == 1
                    assert samples[("jarvis_members", (("state", "alive"),))] == 2
                    sent = ("jarvis_mailbox_messages_total", (("counter", "sent"),))
                    assert samples[sent] == 1
                    assert samples[("jarvis_transport_total", (("counter", "frames_out"),))] >= 10
                    # SWIM's own probe round trips: every acked probe, none invented
                    probes = samples[("jarvis_swim_probe_rtt_seconds_count", ())]
                    assert 1 <= probes <= samples[("jarvis_swim_total", (("counter", "probes"),))]
                    inf = ("jarvis_swim_probe_rtt_seconds_bucket", (("le", "+Inf"),))
                    assert samples[inf] == probes
                    assert 0 < samples[("jarvis_swim_probe_rtt_seconds_sum", ())] < probes
                    assert not any("agent_id" in dict(labels) for _, labels in samples)
                    assert not any(
                        dict(labels).get("role", "").startswith("echo-") for _, labels in samples
                    )
                # b left: the stream says so
                while True:
                    event = json.loads(await lines.__anext__())
                    if event["event"] == "left":
                        assert event["member"]["name"] == "b"
                        break


async def test_metrics_say_how_to_install_prometheus_client_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "prometheus_client" else real(name, *a),
    )
    async with node(tmp_path, "bare", [Echo]) as (_, web):
        answer = await web.get("/metrics")
        assert answer.status_code == 501
        assert "pip install 'jarvis_trio[metrics]'" in answer.text
        assert (await web.get("/nowhere")).status_code == 404
        assert (await web.post("/members")).status_code == 405
