"""CURVE + ZAP on real sockets: members only, and the sender is the authenticated key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import zmq

from jarvis_trio.transport import Bridge, BridgeSettings, KeyPair, generate_keypair, open_bridge
from jarvis_trio.transport.iothread import pack_frames


@asynccontextmanager
async def secured(name: str, keys: KeyPair) -> AsyncIterator[Bridge]:
    async with open_bridge(BridgeSettings(name, keypair=keys, zap_domain="test")) as bridge:
        yield bridge


def handshake_outcome(
    port: int, keys: KeyPair | None, server_key: bytes | None, payload: bytes
) -> int:
    """Connect a raw DEALER (with ``keys``, or none), send ``payload`` and return the first
    handshake event its monitor reports: success or which failure."""
    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.ROUTING_ID, b"node-a")  # claims to be someone else
        if keys is not None and server_key is not None:
            dealer.setsockopt(zmq.CURVE_SERVERKEY, server_key)
            dealer.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
            dealer.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        wanted = (
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        monitor = dealer.get_monitor_socket(wanted)
        monitor.setsockopt(zmq.RCVTIMEO, 5000)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(pack_frames([payload], 1 << 16)[0][0])
        from zmq.utils.monitor import recv_monitor_message

        event = int(recv_monitor_message(monitor)["event"])
        dealer.disable_monitor()
        monitor.close()
        dealer.close()
        return event
    finally:
        ctx.term()


async def test_members_talk_and_the_sender_is_the_authenticated_node() -> None:
    ka, kb = generate_keypair(), generate_keypair()
    with trio.fail_after(10):
        async with secured("node-a", ka) as a, secured("node-b", kb) as b:
            a.set_members({kb.public: "node-b"})
            b.set_members({ka.public: "node-a"})
            a.connect("node-b", "127.0.0.1", b.port, kb.public)
            b.connect("node-a", "127.0.0.1", a.port, ka.public)
            await a.send("node-b", b"hello")
            assert await b.receive() == [("node-a", b"hello")]
            await b.send("node-a", b"back")
            assert await a.receive() == [("node-b", b"back")]
            assert b.stats()["zap_admitted"] == 1
            assert a.public_key == ka.public


async def test_a_plain_client_without_keys_is_refused() -> None:
    ka, kb = generate_keypair(), generate_keypair()
    with trio.fail_after(15):
        async with secured("node-b", kb) as b, secured("node-a", ka) as a:
            b.set_members({ka.public: "node-a"})
            event = await trio.to_thread.run_sync(handshake_outcome, b.port, None, None, b"forged")
            assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED
            # the next frame b receives is the member's, not the forged one
            a.connect("node-b", "127.0.0.1", b.port, kb.public)
            await a.send("node-b", b"genuine")
            assert await b.receive() == [("node-a", b"genuine")]
            assert b.stats()["frames_in"] == 1


async def test_a_valid_key_that_is_not_a_member_is_refused_by_zap() -> None:
    ka, kb, stranger = generate_keypair(), generate_keypair(), generate_keypair()
    with trio.fail_after(15):
        async with secured("node-b", kb) as b, secured("node-a", ka) as a:
            b.set_members({ka.public: "node-a"})
            event = await trio.to_thread.run_sync(
                handshake_outcome, b.port, stranger, kb.public, b"let me in"
            )
            assert event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            assert b.stats()["zap_refused"] >= 1
            a.connect("node-b", "127.0.0.1", b.port, kb.public)
            await a.send("node-b", b"genuine")
            assert await b.receive() == [("node-a", b"genuine")]


async def test_a_member_cannot_pose_as_another_node() -> None:
    """Member C's DEALER claims routing id "node-a": its frames are still reported as C's."""
    ka, kb, kc = generate_keypair(), generate_keypair(), generate_keypair()
    with trio.fail_after(15):
        async with secured("node-b", kb) as b:
            b.set_members({ka.public: "node-a", kc.public: "node-c"})
            event = await trio.to_thread.run_sync(
                handshake_outcome, b.port, kc, kb.public, b"i am node-a"
            )
            assert event == zmq.EVENT_HANDSHAKE_SUCCEEDED
            got = await b.receive()
            assert got == [("node-c", b"i am node-a")]


async def test_a_removed_member_is_no_longer_heard() -> None:
    ka, kb = generate_keypair(), generate_keypair()
    with trio.fail_after(10):
        async with secured("node-a", ka) as a, secured("node-b", kb) as b:
            b.set_members({ka.public: "node-a"})
            a.connect("node-b", "127.0.0.1", b.port, kb.public)
            await a.send("node-b", b"while a member")
            assert await b.receive() == [("node-a", b"while a member")]
            b.set_members({})
            await a.send("node-b", b"after removal")
            # a marker from a raw member connection proves the removed one was processed
            b.set_members({kb.public: "node-b-self"})
            self_client = open_bridge(BridgeSettings("x", keypair=kb, zap_domain="test"))
            async with self_client as marker:
                marker.connect("node-b", "127.0.0.1", b.port, kb.public)
                await marker.send("node-b", b"marker")
                got = await b.receive()
                while ("node-b-self", b"marker") not in got:
                    got += await b.receive()
            assert ("node-a", b"after removal") not in got
            assert b.stats()["dropped_not_member"] >= 1


async def test_a_peer_restarting_with_new_keys_is_reached_after_reconnect() -> None:
    ka, kb1, kb2 = generate_keypair(), generate_keypair(), generate_keypair()
    with trio.fail_after(15):
        async with secured("node-a", ka) as a:
            async with secured("node-b", kb1) as b:
                b.set_members({ka.public: "node-a"})
                a.connect("node-b", "127.0.0.1", b.port, kb1.public)
                await a.send("node-b", b"one")
                assert await b.receive() == [("node-a", b"one")]
                port = b.port
            settings = BridgeSettings("node-b", port=port, keypair=kb2, zap_domain="test")
            async with open_bridge(settings) as b2:
                b2.set_members({ka.public: "node-a"})
                a.connect("node-b", "127.0.0.1", port, kb2.public)
                await a.send("node-b", b"two")
                assert await b2.receive() == [("node-a", b"two")]
            assert a.stats()["connects"] == 2


async def test_reset_after_a_refused_handshake_delivers_everything_once() -> None:
    """The peer did not know our key when we first connected (ZeroMQ never retries a refused
    handshake): after it learns the key, a reset connection delivers what was waiting."""
    ka, kb = generate_keypair(), generate_keypair()
    with trio.fail_after(10):
        async with secured("node-a", ka) as a, secured("node-b", kb) as b:
            a.connect("node-b", "127.0.0.1", b.port, kb.public)
            for i in range(3):
                await a.send("node-b", b"early-%d" % i)
            b.set_members({ka.public: "node-a"})
            a.reset("node-b")
            for i in range(2):
                await a.send("node-b", b"late-%d" % i)
            got: list[tuple[str, bytes]] = []
            while len(got) < 5:
                got += await b.receive()
            assert sorted(got) == sorted(
                [("node-a", b"early-%d" % i) for i in range(3)]
                + [("node-a", b"late-%d" % i) for i in range(2)]
            )
            assert a.stats()["resets"] == 1
