"""Beyond one Redis and one disk: Redis Cluster mailboxes, WAIT, failover, S3 blobs.

Questions (every comparison measured in the same run, medians of several runs):

* Mailboxes, three producer nodes to twelve agents spread over the slots (four per master),
  three consumer nodes: msg/s on a 3-master Cluster against one Redis (target: at least 1x).
* The same on the Cluster with ``redis_min_replicas=1``: the added cost per message.
* Delivery after SIGKILL of the master serving a busy agent: seconds from the kill until the
  first message sent after it arrives (target ≤ cluster-node-timeout + 2 s; 1 s + 2 s here).
* Blob storage, 64 KB records: save and read p50 on S3 (moto on loopback) next to the
  local filesystem.
* The client: the Cluster write path (512-message batches of ``XADD``, one pipeline per
  master) through redis-py's ``RedisCluster`` in worker threads against coredis on Trio,
  when coredis is installed (it is not a dependency; ``pip install coredis`` to compare).

Every server runs on this machine: a Cluster of three masters shares the cores with its
clients, so it cannot show the scaling three machines would.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
import trio

from benchmarks._harness import Result, median, percentile
from jarvis_trio.config import MeshConfig
from jarvis_trio.mailbox import RedisHub, open_mailbox_hub
from jarvis_trio.mailbox._stream import stream_key
from jarvis_trio.storage.blob import BlobStorage
from jarvis_trio.storage.blob_s3 import S3Backend
from jarvis_trio.testing.redis_cluster import RedisClusterServers, key_slot
from jarvis_trio.testing.redis_server import RedisServer
from jarvis_trio.testing.s3_server import MotoS3Server


def _config(**values: object) -> MeshConfig:
    return MeshConfig.load(dict(values), environ={}, env_file=None)


def _spread_agents(cluster: RedisClusterServers, per_master: int) -> list[str]:
    masters = [n for n in cluster.nodes() if n["master"] and not n["failed"]]
    found: dict[int, list[str]] = {n["port"]: [] for n in masters}
    n = 0
    while any(len(agents) < per_master for agents in found.values()):
        agent = f"bench-{n}-{uuid.uuid4().hex[:6]}"
        slot = key_slot(stream_key(agent))
        owner = next(m["port"] for m in masters if any(a <= slot <= b for a, b in m["slots"]))
        if len(found[owner]) < per_master:
            found[owner].append(agent)
        n += 1
    return [agent for agents in found.values() for agent in agents]


async def _fanout(url: str, targets: Sequence[str], count: int, min_replicas: int = 0) -> float:
    """msg/s from 3 producer hubs to ``targets`` served by 3 consumer hubs."""
    config = _config(redis_url=url, redis_min_replicas=min_replicas)
    window = trio.Semaphore(3_000)  # never outrun the readers by more than the retention
    per_producer = count // 3
    async with (
        open_mailbox_hub(config, "p1") as p1,
        open_mailbox_hub(config, "p2") as p2,
        open_mailbox_hub(config, "p3") as p3,
        open_mailbox_hub(config, "c1") as c1,
        open_mailbox_hub(config, "c2") as c2,
        open_mailbox_hub(config, "c3") as c3,
    ):
        consumers = [c1, c2, c3]
        boxes = [consumers[i % 3].mailbox_for(agent) for i, agent in enumerate(targets)]
        for box in boxes:
            await box.read(1)  # join before the clock starts
        expected = per_producer * 3
        per_box = [0] * len(boxes)
        for i in range(expected):
            per_box[i % len(boxes)] += 1
        started = time.perf_counter()

        async def produce(hub: RedisHub | object, offset: int) -> None:
            assert isinstance(hub, RedisHub)
            sender = hub.mailbox_for(f"sender-{offset}")
            for n in range(per_producer):
                await window.acquire()
                sender.send(targets[(offset + n * 3) % len(targets)], {"n": n})
                if n % 256 == 0:
                    await trio.lowlevel.checkpoint()

        async def consume(box_index: int) -> None:
            box = boxes[box_index]
            for _ in range(per_box[box_index]):
                message = await box.receive()
                assert message is not None
                await box.ack(message)
                window.release()

        async with trio.open_nursery() as nursery:
            for offset, hub in enumerate((p1, p2, p3)):
                nursery.start_soon(produce, hub, offset)
            for index in range(len(boxes)):
                nursery.start_soon(consume, index)
        return expected / (time.perf_counter() - started)


async def _resume_after_kill(cluster: RedisClusterServers) -> float:
    """Seconds from SIGKILL of the master serving a busy agent to the first message sent
    after the kill arriving."""
    while True:
        agent = f"busy-{uuid.uuid4().hex[:8]}"
        master = cluster.master_of_key(stream_key(agent))
        try:
            cluster.replica_of(master)
        except Exception:
            continue
        break
    config = _config(redis_url=cluster.url)
    async with (
        open_mailbox_hub(config, "producer") as producer,
        open_mailbox_hub(config, "consumer") as consumer,
    ):
        sender, box = producer.mailbox_for("sender"), consumer.mailbox_for(agent)
        await box.read(1)
        killed_at: list[float] = []
        resumed: list[float] = []

        async def produce() -> None:
            n = 0
            while not resumed:
                sender.send(agent, {"t": time.monotonic(), "n": n})
                n += 1
                if n == 200:
                    await trio.to_thread.run_sync(master.kill)
                    killed_at.append(time.monotonic())
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            with trio.fail_after(60):
                while not resumed:
                    message = await box.receive()
                    assert message is not None
                    await box.ack(message)
                    if killed_at and float(message.payload["t"]) > killed_at[0]:
                        resumed.append(time.monotonic() - killed_at[0])
    await trio.to_thread.run_sync(cluster.rejoin, master)  # a replica again, for the next run
    return resumed[0]


async def _blob_latency(store: BlobStorage, runs: int) -> tuple[list[float], list[float]]:
    data = os.urandom(64 * 1024)
    saves, reads = [], []
    for n in range(runs):
        started = time.perf_counter()
        name = await store.save(f"bench/record-{n}.bin", data)
        middle = time.perf_counter()
        assert await store.read(name) == data
        saves.append(middle - started)
        reads.append(time.perf_counter() - middle)
    return saves, reads


async def _redis_py_writes(url: str, targets: Sequence[str], count: int) -> float:
    from jarvis_trio._redis import open_redis_client

    client = await open_redis_client(url)
    keys = [stream_key(agent) for agent in targets]
    try:
        started = time.perf_counter()
        done = 0
        while done < count:
            batch = [keys[(done + i) % len(keys)] for i in range(512)]

            def pipeline(r: redis.Redis, indexes: list[int], batch: list[str] = batch) -> None:
                pipe = r.pipeline(transaction=False)
                for index in indexes:
                    pipe.xadd(batch[index], {"m": b"x" * 100}, maxlen=10_000)
                pipe.execute()

            await client.run_grouped(batch, pipeline)
            done += len(batch)
        return done / (time.perf_counter() - started)
    finally:
        client.close()


async def _coredis_writes(ports: Sequence[int], targets: Sequence[str], count: int) -> float:
    # coredis is an optional comparison, not a dependency: typed as Any so that the
    # benchmarks type-check the same with or without it installed.
    coredis: Any = importlib.import_module("coredis")

    keys = [stream_key(agent) for agent in targets]
    nodes = [{"host": "127.0.0.1", "port": port} for port in ports]
    client = coredis.RedisCluster(startup_nodes=nodes)
    async with client:
        started = time.perf_counter()
        done = 0
        while done < count:
            async with client.pipeline(transaction=False) as pipe:
                for i in range(512):
                    pipe.xadd(
                        keys[(done + i) % len(keys)],
                        {"m": b"x" * 100},
                        trim_strategy=coredis.PureToken.MAXLEN,
                        threshold=10_000,
                    )
            done += 512
        return done / (time.perf_counter() - started)


def run(quick: bool) -> list[Result]:
    runs = 1 if quick else 3
    count = 6_000 if quick else 24_000
    single, clustered, waited, resumes, client_rates = [], [], [], [], {}
    no_replicas = 0.0
    with RedisServer() as server, RedisClusterServers(node_timeout=1000) as cluster:
        targets = _spread_agents(cluster, 4)
        for _ in range(runs):
            single.append(trio.run(_fanout, server.url, targets, count))
            clustered.append(trio.run(_fanout, cluster.url, targets, count))
            waited.append(trio.run(_fanout, cluster.url, targets, count, 1))
        writes = 12_000 if quick else 48_000
        client_rates["redis-py"] = median(
            [trio.run(_redis_py_writes, cluster.url, targets, writes) for _ in range(runs)]
        )
        if importlib.util.find_spec("coredis") is not None:
            ports = [s.port for s in cluster.servers]
            client_rates["coredis"] = median(
                [trio.run(_coredis_writes, ports, targets, writes) for _ in range(runs)]
            )
        for _ in range(runs):
            resumes.append(trio.run(_resume_after_kill, cluster))
    with RedisClusterServers(replicas=0) as bare:  # what the replicas cost this machine
        bare_targets = _spread_agents(bare, 4)
        no_replicas = median(
            [trio.run(_fanout, bare.url, bare_targets, count) for _ in range(runs)]
        )
    blob_runs = 30 if quick else 100
    with MotoS3Server() as s3, tempfile.TemporaryDirectory() as folder:
        s3.create_bucket("bench")
        s3_store = BlobStorage(
            backend=S3Backend(f"s3://bench/{uuid.uuid4().hex[:8]}", environ=s3.environ())
        )
        s3_save, s3_read = trio.run(_blob_latency, s3_store, blob_runs)
        fs_save, fs_read = trio.run(_blob_latency, BlobStorage(folder), blob_runs)
    one, three, with_wait = median(single), median(clustered), median(waited)
    cost_us = (1 / with_wait - 1 / three) * 1e6
    resume = median(resumes)
    client_note = ", ".join(f"{name} {rate:,.0f} msg/s" for name, rate in client_rates.items())
    if "coredis" not in client_rates:
        client_note += " (coredis not installed: not compared)"
    return [
        Result(
            "Mailbox fan-out, 3 producers -> 12 agents: Cluster (3 masters) / one Redis",
            three / one,
            "x",
            ">= 1x",
            three >= one,
            f"Cluster {three:,.0f} msg/s, one Redis {one:,.0f} msg/s, Cluster without "
            f"replicas {no_replicas:,.0f} msg/s; {count} msgs, median of {runs}; all "
            "servers and clients share this machine's cores",
        ),
        Result(
            "Cluster mailbox with redis_min_replicas=1: cost per message",
            cost_us,
            "us",
            "reported",
            True,
            f"{with_wait:,.0f} msg/s with WAIT against {three:,.0f} without "
            f"({with_wait / three:.2f}x)",
        ),
        Result(
            "Cluster master SIGKILLed: delivery resumes after",
            resume,
            "s",
            "<= 3 s (node timeout 1 s + 2 s)",
            resume <= 3.0,
            "runs: " + ", ".join(f"{r:.2f}" for r in resumes),
        ),
        Result(
            "Blob save, 64 KB: S3 (moto, loopback) p50",
            percentile(s3_save, 50) * 1000,
            "ms",
            "reported",
            True,
            f"filesystem p50 {percentile(fs_save, 50) * 1000:.2f} ms (fsync included); "
            f"{blob_runs} saves each",
        ),
        Result(
            "Blob read, 64 KB: S3 (moto, loopback) p50",
            percentile(s3_read, 50) * 1000,
            "ms",
            "reported",
            True,
            f"filesystem p50 {percentile(fs_read, 50) * 1000:.2f} ms",
        ),
        Result(
            "Cluster write path, 512-message pipelines: redis-py in threads",
            client_rates["redis-py"],
            "msg/s",
            "reported",
            True,
            client_note,
        ),
    ]
