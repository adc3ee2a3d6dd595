"""Mailboxes and the store on a real Redis Cluster and a real Sentinel group.

The shared fixtures (``redis_cluster``, ``redis_sentinel``) are never damaged; the failover
tests start their own servers. A stream "through a failover" sends a steady stream to one
busy agent, SIGKILLs the master serving it mid-stream, and counts what arrives: every id
``send`` returned is either received or — only without ``redis_min_replicas`` — among the
messages the dead master had confirmed (never one confirmed after the failover).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
import trio.testing

from jarvis_trio.config import MeshConfig
from jarvis_trio.mailbox import RedisHub, open_mailbox_hub
from jarvis_trio.mailbox._stream import stream_key
from jarvis_trio.storage.redis_store import open_redis_store
from jarvis_trio.testing.redis_cluster import (
    RedisClusterServers,
    RedisSentinelServers,
    key_slot,
)
from jarvis_trio.testing.redis_server import RedisServer

from .conftest import unique

pytestmark = pytest.mark.redis


def make_config(url: str, **values: object) -> MeshConfig:
    return MeshConfig.load({"redis_url": url, **values}, environ={}, env_file=None)


def test_cluster_and_sentinel_urls_are_validated() -> None:
    assert make_config("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").redis_url
    assert make_config("redis+sentinel://127.0.0.1:26379/mymaster").redis_min_replicas == 0
    assert make_config("redis://x:6379/0", redis_min_replicas="1").redis_min_replicas == 1
    with pytest.raises(ValueError, match="redis_min_replicas"):
        make_config("redis://x:6379/0", redis_min_replicas=-1)


async def test_a_bad_cluster_url_names_the_problem() -> None:
    from jarvis_trio._redis import open_redis_client
    from jarvis_trio.errors import RedisUnavailable

    with pytest.raises(RedisUnavailable, match="names no service"):
        await open_redis_client("redis+sentinel://127.0.0.1:1")
    with pytest.raises(RedisUnavailable, match="is not host:port"):
        await open_redis_client("redis+cluster://127.0.0.1")


def agents_on_every_master(cluster: RedisClusterServers, per_master: int) -> list[str]:
    """Agent ids whose mailbox streams land on each master, ``per_master`` of each."""
    found: dict[int, list[str]] = {}
    nodes = serving_masters(cluster)
    for n in range(10_000):  # three masters: a few dozen names suffice
        if all(len(found.get(node["port"], [])) >= per_master for node in nodes):
            return [agent for agents in found.values() for agent in agents[:per_master]]
        agent = f"agent-{n}-{unique('x')}"
        slot = key_slot(stream_key(agent))
        port = next(node["port"] for node in nodes if any(a <= slot <= b for a, b in node["slots"]))
        found.setdefault(port, []).append(agent)
    raise AssertionError(f"no {per_master} agents on every master of {nodes}")


def serving_masters(cluster: RedisClusterServers) -> list[dict[str, Any]]:
    """The live masters that serve slots. Not every node flagged master: right after start-up
    the view ``nodes()`` reads may still list a replica as a master with no slot (a node learns
    another's new role from that node's next heartbeat)."""
    return [n for n in cluster.nodes() if n["master"] and n["slots"] and not n["failed"]]


def test_a_replica_still_listed_as_a_slotless_master_is_no_master_to_fill() -> None:
    class StaleView:
        """What the first node may report right after start-up: port 7004 is a replica
        whose new role has not reached this node yet."""

        def nodes(self) -> list[dict[str, Any]]:
            slots = [[(0, 5460)], [(5461, 10922)], [(10923, 16383)], []]
            return [
                {"id": str(port), "port": port, "master": True, "failed": False, "slots": owned}
                for port, owned in zip((7001, 7002, 7003, 7004), slots, strict=True)
            ]

    view: Any = StaleView()
    agents = agents_on_every_master(view, 2)  # looped for ever before
    ports = sorted(
        next(n["port"] for n in view.nodes() if _holds(n, key_slot(stream_key(a)))) for a in agents
    )
    assert ports == [7001, 7001, 7002, 7002, 7003, 7003]


def _holds(node: dict[str, Any], slot: int) -> bool:
    return any(low <= slot <= high for low, high in node["slots"])


async def test_mailboxes_span_every_master_with_one_slot_per_agent(
    redis_cluster: RedisClusterServers,
) -> None:
    config = make_config(redis_cluster.url)
    targets = agents_on_every_master(redis_cluster, 2)
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
    ):
        assert isinstance(hub_a, RedisHub) and hub_a.client.kind == "cluster"
        sender = hub_a.mailbox_for(unique("sender"))
        boxes = [hub_b.mailbox_for(agent) for agent in targets]
        sent = {agent: [sender.send(agent, {"n": n}) for n in range(50)] for agent in targets}
        with trio.fail_after(20):
            for box in boxes:
                got = []
                for _ in range(50):
                    message = await box.receive(timeout=10)
                    assert message is not None
                    got.append(message.message_id)
                    await box.ack(message)
                assert got == sent[box.agent_id]  # FIFO per agent across the cluster
            await hub_b.drain()
        assert hub_a.dropped == 0
    # acknowledged messages are gone from every master; the keys carry the agent's tag
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.servers[0].port)
    try:
        for agent in targets:
            assert stream_key(agent) == "jarvis:mbox:{" + agent + "}"
            assert client.xlen(stream_key(agent)) == 0
    finally:
        client.close()


async def test_store_on_the_cluster(redis_cluster: RedisClusterServers) -> None:
    config = make_config(redis_cluster.url)
    async with open_redis_store(config) as store:
        assert store is not None
        keys = [unique(f"k{n}") for n in range(6)]  # spread over several slots
        for n, key in enumerate(keys):
            await store.set(key, {"n": n})
        assert [await store.get(key) for key in keys] == [{"n": n} for n in range(6)]
        assert await store.delete(*keys) == 6  # one call, several slots
        stream = unique("ledger")
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                got: list[object] = []

                async def follow() -> None:
                    entries = await store.read_after(stream, "0-0", timeout=5)
                    got.extend(entry.data for entry in entries)

                nursery.start_soon(follow)
                # the reader is parked on its blocking read's worker thread (whether its XREAD
                # or the append reaches Redis first, the entry must arrive)
                await trio.testing.wait_all_tasks_blocked()
                await store.append(stream, {"event": "x"})
        assert got == [{"event": "x"}]


def migrate_slot(cluster: RedisClusterServers, slot: int, *, finish: bool) -> tuple[int, int]:
    """Start moving ``slot`` to another master (MIGRATING/IMPORTING, keys moved); with
    ``finish`` assign it to the new master everywhere. Returns (source, target) ports."""
    nodes = serving_masters(cluster)
    source = next(n for n in nodes if any(a <= slot <= b for a, b in n["slots"]))
    target = next(n for n in nodes if n["port"] != source["port"])
    src = redis.Redis(port=source["port"])
    dst = redis.Redis(port=target["port"])
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", "127.0.0.1", target["port"], "", 0, 5000, "KEYS", *keys)
        if finish:
            for node in nodes:
                with redis.Redis(port=node["port"]) as admin:
                    admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target["id"])
    finally:
        src.close()
        dst.close()
    return source["port"], target["port"]


def finish_migration(cluster: RedisClusterServers, slot: int, target_port: int) -> None:
    target_id = next(n["id"] for n in cluster.nodes() if n["port"] == target_port)
    for node in serving_masters(cluster):
        with redis.Redis(port=node["port"]) as admin:
            admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_writer_follows_moved_and_ask_without_losing_a_message(
    redis_cluster: RedisClusterServers,
) -> None:
    config = make_config(redis_cluster.url)
    moved_agent, asked_agent = unique("moved"), unique("asked")
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
    ):
        assert isinstance(hub_a, RedisHub)
        sender = hub_a.mailbox_for(unique("sender"))
        moved_box = hub_b.mailbox_for(moved_agent)
        first = sender.send(moved_agent, {"n": 0})
        with trio.fail_after(10):
            assert (await moved_box.receive(timeout=5)).message_id == first  # type: ignore[union-attr]
        # the slot moves behind the hub's back: its slot map is stale, the next write is MOVED
        slot = key_slot(stream_key(moved_agent))
        await trio.to_thread.run_sync(lambda: migrate_slot(redis_cluster, slot, finish=True))
        second = sender.send(moved_agent, {"n": 1})
        with trio.fail_after(10):
            message = await moved_box.receive(timeout=8)
        assert message is not None and message.message_id == second

        # a slot half-way through a migration: a new key is answered ASK by the old owner
        slot = key_slot(stream_key(asked_agent))
        _, target = await trio.to_thread.run_sync(
            lambda: migrate_slot(redis_cluster, slot, finish=False)
        )
        asked = sender.send(asked_agent, {"n": 2})
        with trio.fail_after(10):
            while hub_a.asks_followed == 0 or hub_a.pending_writes:
                await hub_a.progress()
        await trio.to_thread.run_sync(lambda: finish_migration(redis_cluster, slot, target))
        asked_box = hub_b.mailbox_for(asked_agent)
        with trio.fail_after(10):
            message = await asked_box.receive(timeout=8)
        assert message is not None and message.message_id == asked
        assert hub_a.dropped == 0


# -- failover ------------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    sent: list[str]
    received: set[str]
    confirmed_before_loss: int
    resumed_after: float

    @property
    def lost(self) -> list[str]:
        return [m for m in self.sent if m not in self.received]

    def check(self, min_replicas: int) -> None:
        """What the documentation promises: with ``min_replicas`` nothing is lost; without
        it, only messages the dead master had confirmed, never a later one."""
        print(
            f"min_replicas={min_replicas}: sent {len(self.sent)}, lost {len(self.lost)}, "
            f"resumed {self.resumed_after:.2f} s after the kill"
        )
        assert self.resumed_after > 0
        if min_replicas:
            assert self.lost == []
        else:
            assert set(self.lost) <= set(self.sent[: self.confirmed_before_loss])


async def stream_through_failover(
    url: str,
    target: str,
    kill: Callable[[], object],
    await_failover: Callable[[], object],
    *,
    min_replicas: int,
    count: int = 600,
) -> StreamOutcome:
    """Send ``count`` messages at a steady pace to ``target``; after a third of them, run
    ``kill`` (SIGKILL of the master serving ``target``), then ``await_failover`` (which also
    brings the dead master back as a replica, so that ``min_replicas=1`` can be met again).
    Return what was sent and received."""
    config = make_config(url, redis_min_replicas=min_replicas)
    sent: list[str] = []
    received: set[str] = set()
    killed_at: list[float] = []
    resumed: list[float] = []
    confirmed: list[int] = []
    async with (
        open_mailbox_hub(config, "producer") as producer,
        open_mailbox_hub(config, "consumer") as consumer,
    ):
        assert isinstance(producer, RedisHub)
        sender = producer.mailbox_for(unique("sender"))
        box = consumer.mailbox_for(target)
        await box.read(1)  # join before the stream starts

        async def produce() -> None:
            for n in range(count):
                sent.append(sender.send(target, {"n": n}))
                if n == count // 3:
                    await trio.to_thread.run_sync(kill)
                    killed_at.append(time.monotonic())
                    # what the producer holds as confirmed when it learns of the loss
                    while not producer.redis_down:
                        sent.append(sender.send(target, {"n": n}))
                        await producer.progress()
                    confirmed.append(producer.written)
                    await trio.to_thread.run_sync(await_failover)
                await trio.sleep(0.002)  # a steady stream, not one burst
            sent.append(sender.send(target, {"end": True}))

        async def consume() -> None:
            while True:
                message = await box.receive(timeout=None)
                assert message is not None
                after = int(message.payload.get("n", 0)) > count // 3
                if killed_at and not resumed and after and message.message_id not in received:
                    resumed.append(time.monotonic() - killed_at[0])
                received.add(message.message_id)
                await box.ack(message)
                if message.payload.get("end"):
                    return

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                await consume()
            for message in await box.read(1000):  # anything redelivered behind the end mark
                received.add(message.message_id)
                await box.ack(message)
    return StreamOutcome(sent, received, confirmed[0], resumed[0] if resumed else -1.0)


@pytest.fixture(scope="module")
def failover_cluster() -> Iterator[RedisClusterServers]:
    """A cluster of our own: the tests below kill masters."""
    with RedisClusterServers(node_timeout=1000) as cluster:
        yield cluster


def busy_agent_with_replica(cluster: RedisClusterServers) -> tuple[str, RedisServer]:
    """An agent whose master is alive and still has a live replica."""
    while True:
        agent = unique("busy")
        master = cluster.master_of_key(stream_key(agent))
        with redis.Redis(port=master.port) as admin:
            if int(admin.info("replication").get("connected_slaves", 0)) >= 1:
                return agent, master


@pytest.mark.parametrize("min_replicas", [1, 0])
async def test_cluster_master_killed_mid_stream(
    failover_cluster: RedisClusterServers, min_replicas: int
) -> None:
    agent, master = await trio.to_thread.run_sync(busy_agent_with_replica, failover_cluster)
    outcome = await stream_through_failover(
        failover_cluster.url,
        agent,
        master.kill,
        lambda: (failover_cluster.wait_for_failover(master), failover_cluster.rejoin(master)),
        min_replicas=min_replicas,
    )
    outcome.check(min_replicas)


def cut_replicas_off(cluster: RedisClusterServers, master: RedisServer) -> None:
    """The master refuses its replicas' (default) user and drops their links: from now on
    what it writes reaches no replica."""
    with redis.Redis(port=master.port) as admin:
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
    with redis.Redis(port=master.port, username="hub", password="pw") as admin:
        # the link is gone once the master counts no replica (it logs each lost one)
        cluster.wait_until(
            lambda: not int(admin.info("replication")["connected_slaves"]),
            10.0,
            f"port {master.port} to drop its replicas",
        )


@pytest.mark.parametrize("min_replicas", [1, 0])
async def test_what_only_the_dead_master_had_is_lost_without_min_replicas(
    failover_cluster: RedisClusterServers, min_replicas: int
) -> None:
    """The documented loss, made certain: the master's replica is cut off (the master stops
    accepting the replica's user and drops its link) while 50 messages are written, then the
    master is killed and the stale replica promoted. Without ``redis_min_replicas`` the
    master alone confirmed them, and exactly those are lost; with it they were never
    confirmed, stay in the outbox, and reach the new master."""
    cluster = failover_cluster
    agent, master = await trio.to_thread.run_sync(busy_agent_with_replica, cluster)
    # the hub logs in as its own user, so that the replicas' user can be switched off
    for server in cluster.servers:
        if server.running:
            with redis.Redis(port=server.port) as admin:
                admin.execute_command("ACL", "SETUSER", "hub", "on", ">pw", "~*", "&*", "+@all")
    url = cluster.url.replace("redis+cluster://", "redis+cluster://hub:pw@", 1)
    config = make_config(url, redis_min_replicas=min_replicas)
    async with (
        open_mailbox_hub(config, "producer") as producer,
        open_mailbox_hub(config, "consumer") as consumer,
    ):
        assert isinstance(producer, RedisHub)
        sender = producer.mailbox_for(unique("sender"))
        with trio.fail_after(30):
            before = [sender.send(agent, {"phase": "before"}) for _ in range(20)]
            while producer.pending_writes:
                await producer.progress()
            await trio.to_thread.run_sync(cluster.wait_replicated, master)
            await trio.to_thread.run_sync(cut_replicas_off, cluster, master)
            during = [sender.send(agent, {"phase": "during"}) for _ in range(50)]
            if min_replicas:
                while producer.replication_shortfalls == 0:
                    await producer.progress()
                assert producer.written == len(before)  # not confirmed: WAIT fell short
            else:
                while producer.pending_writes:
                    await producer.progress()
                assert producer.written == len(before) + len(during)
            await trio.to_thread.run_sync(master.kill)
            await trio.to_thread.run_sync(cluster.wait_for_failover, master)
            await trio.to_thread.run_sync(cluster.rejoin, master)
            after = [sender.send(agent, {"phase": "after"}) for _ in range(20)]
            box = consumer.mailbox_for(agent)
            received: set[str] = set()
            while after[-1] not in received:
                message = await box.receive(timeout=20)
                assert message is not None, (
                    producer.written,
                    producer.pending_writes,
                    producer.replication_shortfalls,
                )
                received.add(message.message_id)
                await box.ack(message)
    lost = [m for m in before + during + after if m not in received]
    print(f"min_replicas={min_replicas}: lost {len(lost)} of {len(before + during + after)}")
    assert lost == ([] if min_replicas else during)


@pytest.mark.parametrize("min_replicas", [1, 0])
async def test_sentinel_failover_mid_stream(min_replicas: int) -> None:
    from tests.conftest import _require_redis_server

    _require_redis_server(cli=True)
    # two replicas: after the failover one still replicates the new master, as
    # redis_min_replicas=1 needs (Sentinel points the other at the new master)
    group = RedisSentinelServers(replicas=2 if min_replicas else 1)
    await trio.to_thread.run_sync(group.start)
    try:
        first_master = group.current_master()
        outcome = await stream_through_failover(
            group.url,
            unique("busy"),
            first_master.kill,
            lambda: group.wait_for_failover(first_master),
            min_replicas=min_replicas,
        )
    finally:
        await trio.to_thread.run_sync(group.close)
    outcome.check(min_replicas)


async def test_sentinel_round_trip_and_store(redis_sentinel: RedisSentinelServers) -> None:
    config = make_config(redis_sentinel.url)
    target = unique("bob")
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
        open_redis_store(config) as store,
    ):
        assert isinstance(hub_a, RedisHub) and hub_a.client.kind == "sentinel"
        sent = [hub_a.mailbox_for(unique("alice")).send(target, {"n": n}) for n in range(20)]
        box = hub_b.mailbox_for(target)
        got = []
        with trio.fail_after(10):
            while len(got) < 20:
                message = await box.receive(timeout=5)
                assert message is not None
                got.append(message.message_id)
                await box.ack(message)
        assert got == sent
        assert store is not None
        await store.set(unique("k"), 1)


async def test_diagnostics_show_the_cluster_mailbox_and_the_blob_store(
    redis_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    from jarvis_trio.mesh import open_mesh

    config = {"redis_url": redis_cluster.url, "blob_storage_path": str(tmp_path / "blobs")}
    async with open_mesh(config, env_file=None, environ={}) as mesh:
        diagnostics = mesh.get_diagnostics()
    mailbox = diagnostics["mailbox"]
    assert (mailbox["kind"], mailbox["backend"], mailbox["dropped"]) == ("redis", "cluster", 0)
    assert {"replication_shortfalls", "asks_followed", "pending_writes"} <= set(mailbox)
    assert diagnostics["blob_storage"] == str(tmp_path / "blobs")
