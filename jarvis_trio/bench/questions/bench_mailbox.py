"""Mailbox throughput and latency: Redis-backed between two nodes, and in-process.

Questions
    * Redis mailbox between two nodes on loopback: messages per second from ``send`` on one
      hub to ``ack`` on the other (target ≥ 5,000 msg/s).
    * Redis mailbox: send-to-handler latency, p50 (target ≤ 2 ms), with messages sent at a
      steady 1,000 msg/s so that the figure is latency, not queueing.
    * In-process mailbox: send + receive + ack per second (target ≥ 100,000 msg/s).

Both hubs run in one Trio run (one process), as two nodes with distinct names; Redis is a
private ``redis-server`` on a free port without persistence. Figures are medians of several
runs. The in-process figure is wall-clock; its note also gives messages per CPU-second of the
process, which shows the cost per message even when other processes share the cores.
"""

from __future__ import annotations

import time
import uuid

import trio

from jarvis_trio.bench.results import Result, median, percentile
from jarvis_trio.config import MeshConfig
from jarvis_trio.mailbox import RedisHub, open_mailbox_hub
from jarvis_trio.services import Mailbox
from jarvis_trio.testing.redis_server import RedisServer


def _config(**values: object) -> MeshConfig:
    return MeshConfig.load(dict(values), environ={}, env_file=None)


async def _send_window(sender: Mailbox, target: str, count: int, window: trio.Semaphore) -> None:
    """Send ``count`` messages in bursts of up to 500, never more than the window ahead of
    the receiver: a producer that outruns its consumer by more than the retention loses the
    oldest messages (that is the trim policy), which is not what this benchmark measures."""
    sent = 0
    while sent < count:
        await window.acquire()
        burst = 1
        while burst < 500 and sent + burst < count:
            try:
                window.acquire_nowait()
            except trio.WouldBlock:
                break
            burst += 1
        for _ in range(burst):
            sender.send(target, {"n": sent, "t": time.perf_counter()})
            sent += 1


async def _redis_throughput(url: str, count: int) -> float:
    config = _config(redis_url=url)
    target = f"bench-{uuid.uuid4().hex[:8]}"
    window = trio.Semaphore(2_000)
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
    ):
        assert isinstance(hub_a, RedisHub) and isinstance(hub_b, RedisHub)
        sender, receiver = hub_a.mailbox_for("bench-sender"), hub_b.mailbox_for(target)
        await receiver.read(1)  # join: create the group before the clock starts
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_window, sender, target, count, window)
            got = 0
            while got < count:
                message = await receiver.receive()
                assert message is not None
                await receiver.ack(message)
                window.release()
                got += 1
        elapsed = time.perf_counter() - started
        await hub_b.drain()
    return count / elapsed


async def _redis_latency(url: str, count: int, rate: float) -> list[float]:
    config = _config(redis_url=url)
    target = f"bench-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
    ):
        sender, receiver = hub_a.mailbox_for("bench-sender"), hub_b.mailbox_for(target)
        await receiver.read(1)

        async def paced_sender() -> None:
            start = trio.current_time()
            for n in range(count):
                await trio.sleep_until(start + n / rate)
                sender.send(target, {"n": n, "t": time.perf_counter()})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(paced_sender)
            while len(latencies) < count:
                message = await receiver.receive()
                assert message is not None
                latencies.append(time.perf_counter() - float(message.payload["t"]))
                await receiver.ack(message)
    return latencies


async def _in_process_throughput(count: int) -> float:
    """Messages per wall-clock second: send, receive and ack, in chunks of 1,000."""
    async with open_mailbox_hub(_config(), "node") as hub:
        sender, receiver = hub.mailbox_for("sender"), hub.mailbox_for("receiver")
        started = time.perf_counter()
        done = 0
        while done < count:
            chunk = min(1000, count - done)
            for n in range(chunk):
                sender.send("receiver", {"n": n, "kind": "bench"})
            for _ in range(chunk):
                message = await receiver.receive()
                assert message is not None
                await receiver.ack(message)
            done += chunk
        return count / (time.perf_counter() - started)


def run(quick: bool) -> list[Result]:
    runs = 1 if quick else 3
    throughput_count = 5_000 if quick else 20_000
    latency_count = 500 if quick else 2_000
    local_count = 50_000 if quick else 200_000
    rates: list[float] = []
    latencies: list[float] = []
    with RedisServer(persistent=False) as server:
        for _ in range(runs):
            rates.append(trio.run(_redis_throughput, server.url, throughput_count))
            latencies.extend(trio.run(_redis_latency, server.url, latency_count, 1000.0))
    local: list[float] = []
    local_cpu: list[float] = []
    for _ in range(runs):
        cpu = time.process_time()
        local.append(trio.run(_in_process_throughput, local_count))
        local_cpu.append(local_count / (time.process_time() - cpu))
    redis_rate = median(rates)
    p50 = percentile(latencies, 50) * 1000
    p99 = percentile(latencies, 99) * 1000
    local_rate = median(local)
    return [
        Result(
            "Redis mailbox, 2 nodes on loopback: throughput",
            redis_rate,
            "msg/s",
            ">= 5,000 msg/s",
            redis_rate >= 5_000,
            f"{throughput_count} msgs send->receive->ack, median of {runs}",
        ),
        Result(
            "Redis mailbox, 2 nodes on loopback: send-to-handler p50",
            p50,
            "ms",
            "<= 2 ms",
            p50 <= 2.0,
            f"p99 {p99:.2f} ms at 1,000 msg/s, {len(latencies)} msgs",
        ),
        Result(
            "In-process mailbox: throughput",
            local_rate,
            "msg/s",
            ">= 100,000 msg/s",
            local_rate >= 100_000,
            f"{local_count} msgs send+receive+ack, median of {runs}; "
            f"{median(local_cpu):,.0f} msg per CPU-second (what a busy machine cannot hide)",
        ),
    ]
