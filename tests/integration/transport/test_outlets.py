"""Outbound DEALERs owned by the Trio thread, over real ZeroMQ sockets on 127.0.0.1: what a
scheduling batch queued leaves packed when the batch ends, frames sent before the peer is up
wait for it, and a backed-up peer's writer drains its backlog in order."""

from __future__ import annotations

import trio
import trio.testing
from bridges import collect

from jarvis_trio.testing import free_port
from jarvis_trio.transport import BridgeSettings, open_bridge


async def test_what_one_batch_queued_leaves_in_one_message_when_the_batch_ends() -> None:
    with trio.fail_after(10):
        async with (
            open_bridge(BridgeSettings("a", lead_frames=1000)) as a,
            open_bridge(BridgeSettings("b")) as b,
        ):
            a.connect("b", "127.0.0.1", b.port)
            await a.send("b", b"hello")  # opens the DEALER; the handshake completes
            assert await collect(b, 1) == [("a", b"hello")]
            before = a.stats()
            for i in range(64):
                assert a.send_nowait("b", b"%d" % i)
            assert a.stats()["frames_out"] == before["frames_out"]  # still in this batch
            got = await collect(b, 64)
            assert [frame for _, frame in got] == [b"%d" % i for i in range(64)]
            after = a.stats()
            assert after["frames_out"] - before["frames_out"] == 64
            assert after["messages_out"] - before["messages_out"] == 1


async def test_a_batchs_lead_leaves_at_once_and_the_rest_at_its_end_in_order() -> None:
    """The first ``lead_frames`` frames of a batch for a peer leave as soon as they are
    queued (the peer starts on them), the rest when the batch ends; each batch has its own
    lead, and the peer gets every frame once, in the order sent."""
    with trio.fail_after(10):
        async with (
            open_bridge(BridgeSettings("a", lead_frames=32)) as a,
            open_bridge(BridgeSettings("b")) as b,
        ):
            a.connect("b", "127.0.0.1", b.port)
            await a.send("b", b"hello")
            assert await collect(b, 1) == [("a", b"hello")]
            sent: list[bytes] = []
            for _ in range(2):
                before = a.stats()
                for i in range(100):
                    frame = b"%d" % len(sent)
                    sent.append(frame)
                    assert a.send_nowait("b", frame)
                    out = a.stats()["frames_out"] - before["frames_out"]
                    assert out == (0 if i < 31 else 32), i  # the lead, once, nothing after
                await trio.testing.wait_all_tasks_blocked()  # the batch ends: the rest leaves
                after = a.stats()
                assert after["frames_out"] - before["frames_out"] == 100
                assert after["messages_out"] - before["messages_out"] == 2
            got = await collect(b, 200)
            assert [frame for _, frame in got] == sent


async def test_frames_sent_before_the_peer_is_up_reach_it_once_it_is() -> None:
    port = free_port()
    with trio.fail_after(10):
        async with open_bridge(BridgeSettings("a")) as a:
            a.connect("b", "127.0.0.1", port)
            for i in range(3):
                assert a.send_nowait("b", b"early-%d" % i)
            await trio.testing.wait_all_tasks_blocked()  # shipped at the batch's end: waiting
            assert a.stats()["frames_out"] == 0
            async with open_bridge(BridgeSettings("b", port=port)) as b:
                got = await collect(b, 3)
            assert [frame for _, frame in got] == [b"early-%d" % i for i in range(3)]
            assert not any(k.startswith("dropped") and v for k, v in a.stats().items())


async def test_a_sender_out_of_credit_waits_for_the_writer_then_goes_on() -> None:
    port = free_port()
    with trio.fail_after(10):
        async with open_bridge(BridgeSettings("a", peer_credits=2)) as a:
            a.connect("b", "127.0.0.1", port)
            sent = trio.Event()

            async def sender() -> None:
                for i in range(5):
                    await a.send("b", b"%d" % i)
                sent.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                await trio.testing.wait_all_tasks_blocked()
                assert not sent.is_set() and a.stats()["credit_waits"] >= 1
                async with open_bridge(BridgeSettings("b", port=port)) as b:
                    got = await collect(b, 5)
                    await sent.wait()
            assert [frame for _, frame in got] == [b"%d" % i for i in range(5)]
