"""``/metrics`` and ``/stats`` report mailbox dead letters and consumer lag, read from the
hub's own counters, with both mailbox backends (in-process, and a real redis-server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from jarvis_trio.agent import CustomAgent
from jarvis_trio.mailbox.contracts import MailboxMessage
from jarvis_trio.mesh import open_mesh


class Poison(CustomAgent):
    """Fails every mailbox message but the marker, which tells the test all came through."""

    role = "poison"

    def __init__(self, agent_id: str | None = None) -> None:
        super().__init__(agent_id)
        self.marker = trio.Event()

    async def on_mailbox_message(self, message: MailboxMessage) -> None:
        if message.payload.get("marker"):
            self.marker.set()
            return
        raise RuntimeError("poison")


class Idle(CustomAgent):
    """Never reads its mailbox: whatever is sent to it is lag."""

    role = "idle"


class Sender(CustomAgent):
    role = "sender"

    async def run(self) -> None:
        return None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize("backend", ["in-process", "redis"])
async def test_dead_letters_and_consumer_lag_in_metrics_and_stats(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    config: dict[str, Any] = {
        "node_name": "mail",
        "admin_port": 0,
        "blob_storage_path": str(tmp_path),
        "mailbox_max_deliveries": 1,  # the first failure dead-letters
    }
    if backend == "redis":
        config["redis_url"] = request.getfixturevalue("redis_server").url
    with trio.fail_after(20):
        async with open_mesh(config, agents=[Poison, Idle, Sender], env_file=None) as mesh:
            poison, idle, sender = mesh.agents
            assert isinstance(poison, Poison)
            for n in range(2):
                sender.mailbox.send(poison.agent_id, {"n": n})
            for n in range(3):
                sender.mailbox.send(idle.agent_id, {"n": n})
            sender.mailbox.send(poison.agent_id, {"marker": True})
            await poison.marker.wait()  # delivered in order: both failures were handled
            await trio.testing.wait_all_tasks_blocked()  # and the marker acknowledged
            hub = mesh.mailboxes
            assert hub.stats()["dead_lettered"] == 2
            assert len(await hub.dead_letters(poison.agent_id)) == 2

            assert mesh.admin_address is not None
            host, port = mesh.admin_address
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as web:
                stats = (await web.get("/stats")).json()
                scraped = samples((await web.get("/metrics")).text)
            assert stats["mailbox"]["dead_lettered"] == 2
            assert stats["mailbox"]["consumer_lag"] == {"poison": 0, "idle": 3, "sender": 0}
            dead = ("jarvis_mailbox_messages_total", (("counter", "dead_lettered"),))
            assert scraped[dead] == 2
            lag = "jarvis_mailbox_consumer_lag"
            assert scraped[(lag, (("role", "idle"),))] == 3
            assert scraped[(lag, (("role", "poison"),))] == 0
            assert scraped[(lag, (("role", "sender"),))] == 0

            idle_box = idle.mailbox
            taken = await idle_box.read(2)  # delivered, not acknowledged: still lag
            assert (await hub.consumer_lag([idle.agent_id])) == {idle.agent_id: 3}
            for message in taken:
                await idle_box.ack(message)
            assert (await hub.consumer_lag([idle.agent_id])) == {idle.agent_id: 1}


@pytest.mark.redis
async def test_consumer_lag_reads_every_master_of_a_redis_cluster(
    request: pytest.FixtureRequest,
) -> None:
    """One pipeline per master: agents whose streams live on different masters all have a
    figure, and it counts what waits and what was delivered and not acknowledged."""
    from jarvis_trio.config import MeshConfig
    from jarvis_trio.mailbox import RedisHub, open_mailbox_hub
    from jarvis_trio.mailbox._stream import stream_key
    from jarvis_trio.testing.redis_cluster import RedisClusterServers, key_slot

    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    masters = [node for node in cluster.nodes() if node["master"]]
    agents: dict[int, str] = {}  # master port -> an agent whose stream it serves
    n = 0
    while len(agents) < len(masters):
        agent = f"lag-{n}"
        slot = key_slot(stream_key(agent))
        port = next(m["port"] for m in masters if any(a <= slot <= b for a, b in m["slots"]))
        agents.setdefault(port, agent)
        n += 1
    ids = list(agents.values())
    config = MeshConfig.load({"redis_url": cluster.url}, environ={}, env_file=None)
    with trio.fail_after(20):
        async with open_mailbox_hub(config, "lag-node") as hub:
            assert isinstance(hub, RedisHub) and hub.client.kind == "cluster"
            sender = hub.mailbox_for("lag-sender")
            for count, agent in enumerate(ids, start=1):
                for k in range(count):
                    sender.send(agent, {"k": k})
            while hub.stats()["pending_writes"]:
                await hub.progress()
            expected = {agent: count for count, agent in enumerate(ids, start=1)}
            assert await hub.consumer_lag(ids) == expected
            box = hub.mailbox_for(ids[-1])
            taken = await box.read(1)
            assert (await hub.consumer_lag(ids))[ids[-1]] == len(ids)  # delivered, not acked
            await box.ack(taken[0])
            assert (await hub.consumer_lag(ids))[ids[-1]] == len(ids) - 1
