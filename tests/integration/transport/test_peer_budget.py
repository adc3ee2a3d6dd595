"""Bounded outbound connections over real ZeroMQ sockets on 127.0.0.1: DEALERs opened on
demand, idle ones closed, least recently used evicted under the cap, a failed connect
failing one peer only, and a start failure reported with its real cause."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import trio

from jarvis_trio.errors import TransportError
from jarvis_trio.transport import Bridge, BridgeSettings, open_bridge
from jarvis_trio.transport.iothread import IOSettings


def closed_port() -> int:
    """A TCP port nothing listens on (connects to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a counter of the bridge (bounded by the caller's fail_after). Used for the
    idle sweep, which closes a DEALER on its own timer and only counts it: nothing marks the
    moment for a waiter, so look every 5 ms."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.005)


async def receive_from(bridge: Bridge, sender: str, frame: bytes) -> None:
    while True:
        batch = await bridge.receive()
        assert batch, "bridge closed early"
        if (sender, frame) in batch:
            return


async def test_more_peers_than_the_cap_never_exceed_it_and_live_ones_are_reached() -> None:
    cap = 8
    dead = closed_port()
    with trio.fail_after(30):
        async with (
            open_bridge(BridgeSettings("hub", max_peers=cap)) as hub,
            open_bridge(BridgeSettings("live-1")) as live1,
            open_bridge(BridgeSettings("live-2")) as live2,
        ):
            for index in range(1100):  # more than libzmq's default socket table (1023)
                hub.connect(f"ghost-{index}", "127.0.0.1", dead)
            hub.connect("live-1", "127.0.0.1", live1.port)
            hub.connect("live-2", "127.0.0.1", live2.port)
            assert hub.stats()["connects"] == 0  # connect records; nothing is opened yet
            for index in range(1100):
                assert hub.send_nowait(f"ghost-{index}", b"x")
            # queued frames leave when the scheduling batch that queued them ends: one
            # checkpoint later, every ghost's DEALER was opened (and most evicted again)
            await trio.lowlevel.checkpoint()
            assert hub.stats()["connects"] + hub.stats()["connect_failures"] >= 1100
            for round_ in range(3):
                await hub.send("live-1", b"hello-%d" % round_)
                await hub.send("live-2", b"hello-%d" % round_)
                await receive_from(live1, "hub", b"hello-%d" % round_)
                await receive_from(live2, "hub", b"hello-%d" % round_)
            stats = hub.stats()
            assert stats["connect_failures"] == 0
            assert stats["peer_sockets_peak"] <= cap
            assert stats["peer_sockets_open"] <= cap
            assert stats["peers_evicted"] >= 1100 - cap
            # a ghost's frame waited for a handshake that never came: dropped, counted
            assert stats["dropped_evicted"] >= 1100 - cap
            await hub.send("live-1", b"still up")
            await receive_from(live1, "hub", b"still up")


async def test_an_idle_connection_is_closed_and_reopened_on_demand() -> None:
    with trio.fail_after(10):
        async with (
            open_bridge(BridgeSettings("a", peer_idle=0.05)) as a,
            open_bridge(BridgeSettings("b")) as b,
        ):
            a.connect("b", "127.0.0.1", b.port)
            await a.send("b", b"one")
            await receive_from(b, "a", b"one")
            await until(lambda: a.stats()["peers_idle_closed"] == 1)
            assert a.stats()["peer_sockets_open"] == 0
            await a.send("b", b"two")
            await receive_from(b, "a", b"two")
            assert a.stats()["connects"] == 2


async def test_a_failed_connect_fails_that_peer_and_not_the_thread() -> None:
    with trio.fail_after(10):
        async with (
            open_bridge(BridgeSettings("a")) as a,
            open_bridge(BridgeSettings("b")) as b,
        ):
            a.connect("bad", "no such host!", 1)  # ZeroMQ refuses the endpoint itself
            a.connect("b", "127.0.0.1", b.port)
            assert a.send_nowait("bad", b"lost")
            await a.send("b", b"fine")
            await receive_from(b, "a", b"fine")
            stats = a.stats()
            assert stats["connect_failures"] == 1 and stats["dropped_connect_failed"] == 1


class _BadDomain(BridgeSettings):
    """Settings whose I/O thread gets a ZAP domain ZeroMQ refuses (over 255 bytes), past
    the checks that normally stop it earlier -- to see how the thread reports a failure."""

    def io_settings(self) -> IOSettings:
        settings = super().io_settings()
        return IOSettings(
            **{name: getattr(settings, name) for name in IOSettings.__dataclass_fields__}
            | {"zap_domain": b"x" * 300}
        )


async def test_a_failed_start_reports_its_cause_at_once_and_closes_its_sockets() -> None:
    from jarvis_trio.transport import generate_keypair

    settings = _BadDomain("a", keypair=generate_keypair(), start_timeout=10.0)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        async with open_bridge(settings):
            pass
    # the real cause (EINVAL from ZAP_DOMAIN), not "did not start in time", and no hang on
    # a socket left open under the context
    assert "Invalid argument" in str(caught.value)
    assert time.monotonic() - started < 5.0


def test_a_cluster_name_over_255_bytes_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="255"):
        BridgeSettings("a", zap_domain="é" * 128)
