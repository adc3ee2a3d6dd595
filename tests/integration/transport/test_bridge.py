"""Two bridges over real ZeroMQ sockets on 127.0.0.1: delivery, limits, backpressure, restarts."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import zmq
from bridges import collect

from jarvis_trio.errors import PayloadTooLarge, PeerUnavailable, TransportError
from jarvis_trio.testing import free_port
from jarvis_trio.transport import (
    Bridge,
    BridgeSettings,
    Envelope,
    Kind,
    open_bridge,
)
from jarvis_trio.transport.iothread import pack_frames


@asynccontextmanager
async def linked(**settings: Any) -> AsyncIterator[tuple[Bridge, Bridge]]:
    async with (
        open_bridge(BridgeSettings("node-a", **settings)) as a,
        open_bridge(BridgeSettings("node-b", **settings)) as b,
    ):
        a.connect("node-b", "127.0.0.1", b.port)
        b.connect("node-a", "127.0.0.1", a.port)
        yield a, b


def raw_send(port: int, frames: list[list[bytes]], routing_id: bytes = b"raw") -> None:
    """A plain DEALER (no keys) that sends ``frames`` and closes, flushing them first."""
    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.ROUTING_ID, routing_id)
        dealer.setsockopt(zmq.LINGER, 5000)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        for parts in frames:
            dealer.send_multipart(parts)
        dealer.close()
    finally:
        ctx.term()


async def test_frames_flow_both_ways_in_order_with_the_sender_node() -> None:
    with trio.fail_after(10):
        async with linked() as (a, b):
            for i in range(500):
                await a.send("node-b", b"%d" % i)
            got = await collect(b, 500)
            assert got == [("node-a", b"%d" % i) for i in range(500)]
            await b.send("node-a", b"back")
            assert await a.receive() == [("node-b", b"back")]
            stats = a.stats()
            assert stats["frames_out"] == 500 and stats["frames_in"] == 1
            assert b.stats()["frames_in"] == 500


async def test_envelopes_round_trip_and_undecodable_frames_are_counted() -> None:
    with trio.fail_after(10):
        async with linked() as (a, b):
            envelope = Envelope(
                Kind.NOTIFY, "agent-x", "agent-y", None, 1.0, {"c": 1}, {"d": [1, 2]}
            )
            await a.send("node-b", b"\x01garbage")
            await a.send_envelope("node-b", envelope)
            assert await b.receive_envelopes() == [("node-a", envelope)]
            assert b.stats()["dropped_undecodable"] == 1


async def test_oversize_is_refused_at_the_sender_and_dropped_at_the_receiver() -> None:
    with trio.fail_after(10):
        async with linked(max_frame=1000) as (a, b):
            with pytest.raises(PayloadTooLarge):
                await a.send("node-b", b"x" * 1001)
            big = Envelope(Kind.NOTIFY, "t", "s", None, 0.0, None, "y" * 2000)
            with pytest.raises(PayloadTooLarge):
                await a.send_envelope("node-b", big)
            assert a.stats()["refused_too_large"] == 2
            # a peer that ignores the limit: its frame is dropped and counted, and the
            # frame after it on the same connection still arrives
            (oversized,) = pack_frames([b"z" * 1001], 1 << 16)
            (fine,) = pack_frames([b"ok"], 1 << 16)
            truncated = b"\x00\x00\x00\x09abc"
            await trio.to_thread.run_sync(
                raw_send, b.port, [[oversized[0]], [b"a", b"b"], [truncated], [fine[0]]]
            )
            assert await b.receive() == [("raw", b"ok")]
            stats = b.stats()
            assert stats["dropped_oversize"] == 1 and stats["dropped_malformed"] == 2


async def test_send_to_an_unknown_peer_and_after_close_are_clear_errors() -> None:
    with trio.fail_after(10):
        async with open_bridge(BridgeSettings("solo")) as bridge:
            with pytest.raises(PeerUnavailable, match="'nobody'"):
                await bridge.send("nobody", b"x")
            with pytest.raises(ValueError, match="data port 0"):
                bridge.connect("p", "127.0.0.1", 0)
        with pytest.raises(TransportError, match="closed"):
            bridge.send_nowait("nobody", b"x")
        assert await bridge.receive() == []


async def test_a_busy_port_fails_the_start_with_a_transport_error() -> None:
    with trio.fail_after(10):
        async with open_bridge(BridgeSettings("first")) as first:
            with pytest.raises(TransportError, match=f"127.0.0.1:{first.port}"):
                async with open_bridge(BridgeSettings("second", port=first.port)):
                    pass  # pragma: no cover - the start fails


async def test_backpressure_holds_senders_and_loses_nothing() -> None:
    """A receiver that does not read: ZeroMQ's queues fill, then the peer's credits run out
    and senders wait; once it reads, everything arrives in order."""
    frame_size = 64 * 1024
    tuning = {"peer_credits": 4, "inbox_capacity": 4, "batch": 2, "sndhwm": 2, "rcvhwm": 2}
    with trio.fail_after(20):
        async with linked(**tuning) as (a, b):
            sent = 0
            while a.send_nowait("node-b", sent.to_bytes(4, "big") + bytes(frame_size)):
                sent += 1
                assert sent < 10_000, "credits never ran out"
                if sent % 4 == 0:
                    await trio.testing.wait_all_tasks_blocked()
            blocked = trio.Event()

            async def one_more() -> None:
                blocked.set()
                await a.send("node-b", sent.to_bytes(4, "big") + bytes(frame_size))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(one_more)
                await blocked.wait()
                await trio.testing.wait_all_tasks_blocked()
                got = await collect(b, sent + 1)
            order = [int.from_bytes(frame[:4], "big") for _, frame in got]
            assert order == list(range(sent + 1))
            assert not any(k.startswith("dropped") and v for k, v in b.stats().items())


async def test_disconnect_wakes_a_waiting_sender_with_peer_unavailable() -> None:
    unreachable = free_port()
    with trio.fail_after(10):
        async with open_bridge(BridgeSettings("a", peer_credits=1, sndhwm=1)) as a:
            a.connect("gone", "127.0.0.1", unreachable)
            outcome: list[BaseException] = []

            async def sender() -> None:
                try:
                    while True:
                        await a.send("gone", b"x" * 100)
                except PeerUnavailable as exc:
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                await trio.testing.wait_all_tasks_blocked()
                a.disconnect("gone")
            assert outcome and "gone" in str(outcome[0])
            assert not a.is_connected("gone")


async def test_a_peer_restarting_on_the_same_port_is_reached_again() -> None:
    with trio.fail_after(15):
        async with open_bridge(BridgeSettings("a")) as a:
            async with open_bridge(BridgeSettings("b")) as b:
                port = b.port
                a.connect("b", "127.0.0.1", port)
                await a.send("b", b"first")
                assert await b.receive() == [("a", b"first")]
            async with open_bridge(BridgeSettings("b", port=port)) as b2:
                # ZeroMQ delivers at most once: a frame written into the dying connection
                # before ``a`` notices the restart is lost (the request layer's timeout covers
                # that). What must hold is that the restarted peer is reached again, so the
                # test sends numbered frames, each given a moment to arrive, until one does.
                sent: list[bytes] = []
                got: list[tuple[str, bytes]] = []
                while not got:
                    sent.append(b"again %d" % len(sent))
                    await a.send("b", sent[-1])
                    with trio.move_on_after(0.25):
                        got = await b2.receive()
                assert got and all(peer == "a" and frame in sent for peer, frame in got), got


async def test_closing_with_an_unreachable_peer_and_queued_frames_is_bounded() -> None:
    with trio.fail_after(5):
        async with open_bridge(BridgeSettings("a", linger=0.1, sndhwm=10)) as a:
            a.connect("down", "127.0.0.1", free_port())
            for _ in range(50):
                a.send_nowait("down", b"x")
        # nothing entered ZeroMQ for a peer that never completed a handshake
        assert a.stats()["frames_out"] == 0


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support (socket.has_ipv6)")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback (::1)")
    with trio.fail_after(10):
        async with (
            open_bridge(BridgeSettings("v6a", bind_host="::1")) as a,
            open_bridge(BridgeSettings("v6b", bind_host="::1")) as b,
        ):
            a.connect("v6b", "::1", b.port)
            await a.send("v6b", b"over v6")
            assert await b.receive() == [("v6a", b"over v6")]


def test_settings_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="node_name"):
        BridgeSettings("")
    with pytest.raises(ValueError, match="peer_credits 0"):
        BridgeSettings("n", peer_credits=0)
    with pytest.raises(ValueError, match="port 70000"):
        BridgeSettings("n", port=70000)


async def test_a_failing_io_thread_is_reported_to_trio_and_closing_does_not_hang() -> None:
    with trio.fail_after(10):
        async with linked() as (a, b):
            # a frame that is not bytes cannot be packed: the I/O loop fails on it
            a._outbox.put(("node-b", 12345))  # type: ignore[arg-type]
            with pytest.raises(TransportError, match="I/O thread failed"):
                await a.receive()
            with pytest.raises(TransportError, match="I/O thread failed"):
                a.send_nowait("node-b", b"x")
            await b.send("node-a", b"still fine")
