"""SWIM over real UDP sockets on loopback: join, crash, leave, restart, IPv6, keys.

Periods are short (0.1 s) so that each test takes a second or two; every wait is a
condition checked under ``trio.fail_after`` with generous bounds, so CPU load slows the
tests down rather than failing them.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from jarvis_trio.config import MeshConfig
from jarvis_trio.swim import (
    EventKind,
    MemberState,
    SwimConfig,
    SwimNode,
    open_swim_node,
)

CONFIG = SwimConfig().with_period(0.1)
BOUND = 20.0  # seconds: generous, the conditions usually hold within one or two


async def wait_all(
    nodes: list[SwimNode], condition: Callable[[SwimNode], bool], what: str, bound: float = BOUND
) -> None:
    """Wait (event-driven, see ``SwimNode.wait_until``) until ``condition`` holds at every node
    at once; fail after ``bound`` seconds."""
    try:
        with trio.fail_after(bound):
            while not all(condition(n) for n in nodes):
                for n in nodes:
                    await n.wait_until(lambda n=n: condition(n))  # type: ignore[misc]
    except trio.TooSlowError:
        raise AssertionError(f"timed out waiting for: {what}") from None


def states(node: SwimNode) -> dict[str, MemberState]:
    return {m.name: m.state for m in node.members()}


def sees_alive(node: SwimNode, names: set[str]) -> bool:
    view = states(node)
    return all(view.get(n) is MemberState.ALIVE for n in names)


@asynccontextmanager
async def cluster(
    count: int, host: str = "127.0.0.1", **kwargs: object
) -> AsyncIterator[tuple[list[SwimNode], AsyncExitStack]]:
    """``count`` nodes; the first is the seed of the others. Ports are chosen by the kernel."""
    async with AsyncExitStack() as stack:
        nodes: list[SwimNode] = []
        seed = await stack.enter_async_context(
            open_swim_node(name="n0", bind=(host, 0), config=CONFIG, rng=random.Random(0), **kwargs)
        )
        nodes.append(seed)
        for i in range(1, count):
            node = await stack.enter_async_context(
                open_swim_node(
                    name=f"n{i}",
                    bind=(host, 0),
                    seeds=[seed.address],
                    config=CONFIG,
                    rng=random.Random(i),
                    **kwargs,
                )
            )
            nodes.append(node)
        yield nodes, stack


async def test_join_through_a_seed() -> None:
    async with cluster(4) as (nodes, _):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "4 nodes converge")
        member = nodes[1].protocol.member("n0")
        assert member is not None and member.address == nodes[0].address


async def test_crash_is_detected_everywhere() -> None:
    async with cluster(4) as (nodes, _):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "converge")
        nodes[3].close()
        survivors = nodes[:3]
        await wait_all(
            survivors,
            lambda n: states(n).get("n3") is MemberState.DEAD,
            "n3 declared dead by all survivors",
        )
        assert all(sees_alive(n, names - {"n3"}) for n in survivors)


async def test_graceful_leave_is_left_not_dead() -> None:
    async with cluster(3) as (nodes, _):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "converge")
        events = nodes[0].subscribe()
        with trio.fail_after(BOUND):
            await nodes[2].leave()
        await wait_all(
            nodes[:2], lambda n: states(n).get("n2") is MemberState.LEFT, "n2 recorded as left"
        )
        seen = []
        while True:
            with trio.move_on_after(0):
                seen.append(await events.receive())
                continue
            break
        assert [(e.kind, e.member.name) for e in seen] == [(EventKind.LEFT, "n2")]
        assert nodes[0].stats().get("declared_dead", 0) == 0


async def test_restart_on_the_same_address() -> None:
    async with cluster(3) as (nodes, stack):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "converge")
        address = nodes[2].address
        old_epoch = nodes[0].protocol.member("n2").epoch  # type: ignore[union-attr]
        nodes[2].close()
        await wait_all(
            nodes[:2], lambda n: states(n).get("n2") is MemberState.DEAD, "n2 declared dead"
        )
        reborn = await stack.enter_async_context(
            open_swim_node(
                name="n2",
                bind=address,
                seeds=[nodes[0].address],
                config=CONFIG,
                rng=random.Random(9),
            )
        )
        everyone = [nodes[0], nodes[1], reborn]
        await wait_all(everyone, lambda n: sees_alive(n, names), "n2 is back")
        member = nodes[1].protocol.member("n2")
        assert member is not None and member.epoch > old_epoch  # a new life, no refutation
        assert (reborn.protocol.epoch, reborn.protocol.incarnation) == (
            member.epoch,
            member.incarnation,
        )


async def test_metadata_update_reaches_peers_with_an_event() -> None:
    async with cluster(3) as (nodes, _):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "converge")
        events = nodes[2].subscribe()
        await nodes[0].update_metadata(directory_version=7, public_key=b"k" * 32, data_port=9000)

        def updated(node: SwimNode) -> bool:
            member = node.protocol.member("n0")
            return member is not None and member.meta.directory_version == 7

        await wait_all(nodes[1:], updated, "metadata disseminated")
        with trio.fail_after(BOUND):
            async for event in events:
                if event.kind is EventKind.METADATA and event.member.name == "n0":
                    assert event.member.meta.public_key == b"k" * 32
                    assert event.member.meta.data_port == 9000
                    break


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
async def test_ipv6_pair() -> None:
    async with cluster(2, host="::1") as (nodes, _):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "IPv6 pair converges")
        member = nodes[1].protocol.member("n0")
        assert member is not None and member.meta.host == "::1"


async def test_cluster_key_keeps_strangers_out() -> None:
    key = b"0123456789abcdef0123"
    async with cluster(2, cluster_key=key, cluster_name="prod") as (nodes, stack):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "keyed pair converges")
        stranger = await stack.enter_async_context(
            open_swim_node(
                name="intruder",
                bind=("127.0.0.1", 0),
                seeds=[nodes[0].address],
                config=CONFIG,
                cluster_key=b"another-key-entirely",
                cluster_name="prod",
            )
        )
        await wait_all(nodes[:1], lambda n: n.stats().get("drop_auth", 0) >= 3, "forgeries counted")
        assert "intruder" not in states(nodes[0])
        assert set(states(stranger)) == {"intruder"}


async def test_garbage_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis_trio.swim.driver")
    async with cluster(2, log_interval=3600.0) as (nodes, _):
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "converge")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"", nodes[0].address)
            raw.sendto(b"\x09\x01garbage", nodes[0].address)
            raw.sendto(b"\x02\x01\x00", nodes[0].address)
            raw.sendto(b"\x02\x77", nodes[0].address)
            raw.sendto(b"x" * 1500, nodes[0].address)

        def counted(node: SwimNode) -> bool:
            stats = node.stats()
            return (
                stats.get("drop_version", 0) >= 1
                and stats.get("drop_truncated", 0) >= 2
                and stats.get("drop_type", 0) >= 1
                and stats.get("drop_oversized", 0) >= 1
            )

        await wait_all(nodes[:1], counted, "every bad datagram counted by reason")
        await wait_all(nodes, lambda n: sees_alive(n, names), "nodes still serving")
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, "five bad datagrams, one log line per interval"


async def test_lagging_subscriber_gets_a_resync() -> None:
    async with AsyncExitStack() as stack:
        seed = await stack.enter_async_context(
            open_swim_node(name="n0", bind=("127.0.0.1", 0), config=CONFIG)
        )
        lagging = seed.subscribe(maxlen=1)
        nodes = [seed]
        for i in range(1, 4):
            nodes.append(
                await stack.enter_async_context(
                    open_swim_node(
                        name=f"n{i}", bind=("127.0.0.1", 0), seeds=[seed.address], config=CONFIG
                    )
                )
            )
        names = {n.name for n in nodes}
        await wait_all(nodes, lambda n: sees_alive(n, names), "converge")
        with trio.fail_after(BOUND):
            first = await lagging.receive()
            assert first.kind is EventKind.JOIN
            marker = await lagging.receive()
        assert marker.kind is None and marker.member.name == "n0"
        assert lagging.lost >= 1 and seed.stats()["events_lost"] == lagging.lost


async def test_timers_follow_trios_clock(autojump_clock: trio.abc.Clock) -> None:
    """Under MockClock, 10 virtual seconds pass at once and the timers keep pace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # a seed that never answers
        async with open_swim_node(
            name="lonely", bind=("127.0.0.1", 0), seeds=[silent.getsockname()], config=CONFIG
        ) as node:
            started = trio.current_time()
            await trio.sleep(10.0)
            assert trio.current_time() - started == pytest.approx(10.0)
            joins = node.stats()["tx_datagrams"]
            assert 90 <= joins <= 120  # about one join push/pull per 0.1 s join_retry


async def test_node_from_mesh_config() -> None:
    mesh = MeshConfig.load({"bind_port": 0, "node_name": "meshy"}, environ={}, env_file=None)
    async with cluster(1) as (nodes, _):
        seeded = mesh.replace(seed_nodes=f"127.0.0.1:{nodes[0].address[1]}")
        node = SwimNode.from_mesh(seeded, swim=CONFIG, directory_version=4)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await wait_all([nodes[0], node], lambda n: sees_alive(n, {"n0", "meshy"}), "joined")
            member = nodes[0].protocol.member("meshy")
            assert member is not None and member.meta.directory_version == 4
            await node.leave()


def _rmem_max() -> int:
    try:
        with open("/proc/sys/net/core/rmem_max") as file:
            return int(file.read())
    except OSError:
        return 0


@pytest.mark.parametrize("recv_buffer", [None, 65_536])
async def test_receive_buffer_is_asked_for_and_reported(recv_buffer: int | None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    config = CONFIG.scaled(recv_buffer=recv_buffer)
    async with open_swim_node(name="solo", bind=("127.0.0.1", 0), config=config) as node:
        granted = node.stats()["recv_buffer"]
    if recv_buffer is None:
        assert granted == default
    else:
        assert granted >= min(recv_buffer, _rmem_max())


@pytest.mark.skipif(
    _rmem_max() < 2**20,
    reason="net.core.rmem_max caps the receive buffer under the 1 MiB the burst needs",
)
async def test_a_burst_while_the_node_is_off_the_cpu_is_not_dropped_by_the_kernel() -> None:
    """1,000 datagrams (about 1 MB of kernel buffer) arrive while the node's thread is blocked:
    the configured buffer holds them all and the node reads every one afterwards. With the
    kernel's default buffer (about 208 KiB) most of them were dropped unseen."""
    burst = 1_000
    async with open_swim_node(name="solo", bind=("127.0.0.1", 0), config=CONFIG) as node:
        before = node.protocol.rx_datagrams
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            # the sends run on this thread: the node's receive loop cannot read meanwhile
            for i in range(burst):
                raw.sendto(b"\x09\x01junk-%04d" % i, node.address)
        with trio.fail_after(BOUND):
            await node.wait_until(lambda: node.protocol.rx_datagrams - before >= burst)
        assert node.protocol.rx_datagrams - before == burst
