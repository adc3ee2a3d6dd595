"""Hostile datagrams against a live cluster on loopback: extreme versions, replays, a bug.

Each test runs three real nodes on kernel-chosen ports and sends crafted datagrams from a
plain UDP socket, as an attacker (or, with a key, a member gone rogue) would.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from jarvis_trio.swim import (
    EventKind,
    MembershipEvent,
    MemberState,
    Subscription,
    SwimConfig,
    SwimNode,
    codec,
    open_swim_node,
)
from jarvis_trio.swim.keyring import Keyring
from jarvis_trio.swim.members import MAX_EPOCH, MAX_INC, MAX_VERSION, NodeMeta, version

KEY = b"a-cluster-secret-of-32-characters"
CONFIG = SwimConfig().with_period(0.1)
BOUND = 20.0


async def wait_all(nodes: list[SwimNode], condition: Callable[[SwimNode], bool], what: str) -> None:
    try:
        with trio.fail_after(BOUND):
            while not all(condition(n) for n in nodes):
                for n in nodes:
                    await n.wait_until(lambda n=n: condition(n))  # type: ignore[misc]
    except trio.TooSlowError:
        raise AssertionError(f"timed out waiting for: {what}") from None


def state_of(node: SwimNode, name: str) -> MemberState | None:
    member = node.protocol.member(name)
    return None if member is None else member.state


def all_alive(node: SwimNode, names: set[str]) -> bool:
    return all(state_of(node, n) is MemberState.ALIVE for n in names)


@asynccontextmanager
async def cluster(
    names: list[str], config: SwimConfig = CONFIG, **kwargs: object
) -> AsyncIterator[tuple[list[SwimNode], AsyncExitStack]]:
    """Nodes joined through the first one, converged; the stack takes more contexts."""
    async with AsyncExitStack() as stack:
        nodes: list[SwimNode] = []
        for i, name in enumerate(names):
            seeds = [nodes[0].address] if nodes else []
            node = await stack.enter_async_context(
                open_swim_node(
                    name=name,
                    bind=("127.0.0.1", 0),
                    seeds=seeds,
                    config=config,
                    rng=random.Random(i),
                    **kwargs,
                )
            )
            nodes.append(node)
        await wait_all(nodes, lambda n: all_alive(n, set(names)), "converge")
        yield nodes, stack


def seal(data: bytes, key: bytes | None) -> bytes:
    return data if key is None else Keyring([key], "jarvis").seal(data)


def gossip(*updates: bytes) -> bytes:
    return codec.HEADER_GOSSIP + bytes((len(updates),)) + b"".join(updates)


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "key"])
@pytest.mark.parametrize("kind", ["suspect", "dead", "alive"])
async def test_a_claim_at_the_last_incarnation_crashes_nobody(kind: str, key: bytes | None) -> None:
    """The datagram that used to stop every node it reached: a record naming n2 at the last
    incarnation, sent to n0, which gossips it on. n2 moves to the next epoch instead of
    overflowing, and everyone ends up seeing it alive there."""
    async with cluster(["n0", "n1", "n2"], cluster_key=key) as (nodes, _):
        victim = nodes[2]
        epoch = victim.protocol.epoch
        claim = version(epoch, MAX_INC)
        name8, other8 = codec.encode_name("n2"), codec.encode_name("n1")
        record = {
            "suspect": codec.encode_suspect(name8, claim, other8),
            "dead": codec.encode_dead(name8, claim, other8),
            "alive": codec.encode_alive(  # its own address (a move would be refused)
                name8, claim, codec.encode_meta(NodeMeta(*victim.address, 10))
            ),
        }[kind]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(seal(gossip(record), key), nodes[0].address)

        def healed(node: SwimNode) -> bool:
            member = node.protocol.member("n2")
            return (
                member is not None
                and member.state is MemberState.ALIVE
                and member.epoch == epoch + 1
                and member.meta == victim.protocol.meta
            )

        await wait_all(nodes, healed, "n2 alive in its next epoch everywhere")
        assert (victim.protocol.epoch, victim.protocol.incarnation) == (epoch + 1, 0)
        assert victim.stats()["epoch_moves"] == 1
        for node in nodes:
            assert node.stats().get("handler_errors", 0) == 0
            assert all_alive(node, {"n0", "n1", "n2"})


@pytest.mark.parametrize("ver", [MAX_VERSION, version(MAX_EPOCH // 2, 0)])
async def test_a_claim_from_the_far_future_is_refused(ver: int) -> None:
    """Epochs are boot times: one far ahead of the clock is forged, and refused everywhere,
    so nobody can push a node to a version it could not outrank."""
    async with cluster(["n0", "n1", "n2"]) as (nodes, _):
        victim = nodes[2]
        before = victim.protocol.version
        name8 = codec.encode_name("n2")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(gossip(codec.encode_dead(name8, ver, name8)), nodes[0].address)
        await wait_all(nodes[:1], lambda n: n.stats().get("drop_future", 0) == 1, "refused")
        assert victim.protocol.version == before
        assert all_alive(nodes[0], {"n1", "n2"})


@pytest.mark.parametrize("kind", ["dead", "left"])
async def test_a_forged_death_is_refuted_by_its_victim_within_periods(kind: str) -> None:
    """A well-formed *dead* or *left* at a member's current version is believed, as SWIM
    believes every member. The victim still pings the nodes that believe it: their acks tell
    it, it refutes, and it is back everywhere -- without waiting for anti-entropy (off here)."""
    config = CONFIG.scaled(pushpull_interval=None)
    async with cluster(["n0", "n1", "n2"], config) as (nodes, _):
        victim = nodes[2]
        before = victim.protocol.version
        name8 = codec.encode_name("n2")
        forged = (
            codec.encode_left(name8, before)
            if kind == "left"
            else codec.encode_dead(name8, before, codec.encode_name("n1"))
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(gossip(forged), nodes[0].address)
        await wait_all(
            nodes,
            lambda n: victim.protocol.version == before + 1 and all_alive(n, {"n0", "n1", "n2"}),
            "n2 refuted and back everywhere",
        )


async def test_an_exception_in_the_core_drops_the_datagram_not_the_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The driver's last line: were the core ever to raise, the node counts it, logs it once
    per interval and keeps serving."""
    async with cluster(["n0", "n1"], log_interval=3600.0) as (nodes, _):
        proto = nodes[0].protocol
        real = proto.handle_datagram

        def flaky(data: bytes, addr: tuple[str, int], now: float) -> object:
            if data.startswith(b"boom"):
                raise RuntimeError("a bug in the core")
            return real(data, addr, now)

        proto.handle_datagram = flaky  # type: ignore[assignment,method-assign]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for _ in range(3):
                raw.sendto(b"boom", nodes[0].address)
        await wait_all(nodes[:1], lambda n: n.stats().get("handler_errors", 0) == 3, "three errors")
        before = proto.rx_datagrams
        await wait_all(nodes[:1], lambda n: n.protocol.rx_datagrams > before + 5, "serving")
        assert all_alive(nodes[0], {"n1"}) and all_alive(nodes[1], {"n0"})
    errors = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None


class Recorder:
    """Every datagram the wrapped nodes receive, in order (the attacker's capture)."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[int, bytes]] = []  # (index of the receiving node, data)
        self.replayed = 0  # datagrams from the replay socket handled so far
        self.replay_port = 0

    def tap(self, index: int, node: SwimNode) -> None:
        proto = node.protocol
        real = proto.handle_datagram

        def handle(data: bytes, addr: tuple[str, int], now: float) -> object:
            if addr[1] == self.replay_port:
                self.replayed += 1
            elif self.replay_port == 0:
                self.datagrams.append((index, data))
            return real(data, addr, now)

        proto.handle_datagram = handle  # type: ignore[assignment,method-assign]


async def replay(rec: Recorder, raw: trio.socket.SocketType, targets: list[SwimNode]) -> None:
    """Send every captured datagram to every target, in bursts the kernel buffers keep (a
    Trio socket: a blocking send would stall the very loop that drains the receivers)."""
    expected = rec.replayed
    for start in range(0, len(rec.datagrams), 16):
        for _, data in rec.datagrams[start : start + 16]:
            for target in targets:
                await raw.sendto(data, target.address)
                expected += 1
        with trio.fail_after(BOUND):
            await targets[0].wait_until(lambda goal=expected: rec.replayed >= goal)  # type: ignore[misc]


async def test_replayed_datagrams_of_an_earlier_life_resurrect_and_evict_nobody() -> None:
    """With a key, capture everything a 3-node cluster receives while n2 lives, changes its
    metadata and leaves; replay all of it (1) while its *left* record is held, (2) after it
    was reaped, (3) after n2 restarted. Target: 0 resurrections, 0 evictions."""
    config = CONFIG.scaled(dead_retention=1.0)
    rec = Recorder()
    events: list[tuple[str, MembershipEvent]] = []

    async def collect(name: str, sub: Subscription) -> None:
        async for event in sub:
            events.append((name, event))

    async with cluster(["n0", "n1", "n2"], config, cluster_key=KEY) as (nodes, stack):
        collectors = await stack.enter_async_context(trio.open_nursery())
        for index, node in enumerate(nodes):
            rec.tap(index, node)
        for node in nodes[:2]:
            collectors.start_soon(collect, node.name, node.subscribe(maxlen=4096))
        first_life = nodes[2]
        first_epoch = first_life.protocol.epoch
        address = first_life.address
        for directory_version in (1, 2, 3):
            await first_life.update_metadata(directory_version=directory_version)
        await wait_all(
            nodes,
            lambda n: n.protocol.member("n2").meta.directory_version == 3,  # type: ignore[union-attr]
            "metadata seen",
        )
        with trio.fail_after(BOUND):  # a few periods of ordinary traffic in the capture
            await nodes[0].wait_until(lambda: len(rec.datagrams) >= 60)
        await first_life.leave()
        survivors = nodes[:2]
        await wait_all(survivors, lambda n: state_of(n, "n2") is MemberState.LEFT, "left")
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            await raw.bind(("127.0.0.1", 0))
            rec.replay_port = raw.getsockname()[1]
            await replay(rec, raw, survivors)  # (1) the left record is still held
            for node in survivors:
                assert state_of(node, "n2") is MemberState.LEFT
            await wait_all(survivors, lambda n: state_of(n, "n2") is None, "n2 reaped")
            await replay(rec, raw, survivors)  # (2) only the tombstone is left
            for node in survivors:
                assert state_of(node, "n2") is None
                assert node.stats()["drop_buried"] > 0
            reborn = await stack.enter_async_context(
                open_swim_node(
                    name="n2",
                    bind=address,
                    seeds=[nodes[0].address],
                    config=config,
                    cluster_key=KEY,
                    rng=random.Random(7),
                )
            )
            rec.tap(2, reborn)
            everyone = [*survivors, reborn]
            await wait_all(everyone, lambda n: all_alive(n, {"n0", "n1", "n2"}), "reborn")
            await replay(rec, raw, everyone)  # (3) the old life against the new one
            for node in everyone:
                assert all_alive(node, {"n0", "n1", "n2"})
            new_epoch = reborn.protocol.epoch
            assert new_epoch > first_epoch
            assert reborn.stats().get("epoch_moves", 0) == 0
            assert reborn.stats().get("refutations", 0) == 0
        collectors.cancel_scope.cancel()
    about = [(name, e.kind, e.member.epoch) for name, e in events if e.member.name == "n2"]
    resurrections = [e for e in about if e[1] is EventKind.JOIN and e[2] == first_epoch]
    assert resurrections == [], about
    for name in ("n0", "n1"):
        assert (name, EventKind.JOIN, new_epoch) in about, about
    bad = {EventKind.LEFT, EventKind.DEAD, EventKind.SUSPECT}
    evictions = [e for e in about if e[1] in bad and e[2] == new_epoch]
    assert evictions == [], about
