"""A node that was off the CPU reads what already arrived before it judges anyone silent.

After a stall, a timer past its deadline and the socket's backlog become ready together; if the
timer ran first, an ack waiting unread in the receive buffer would count as silence and a live
member would be declared dead by the stall of the node that judges it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from jarvis_trio.swim import MemberState, NodeMeta, SwimConfig, codec, open_swim_node

CONFIG = SwimConfig()  # 1 s period, 0.5 s probe timeout: the suspicion outlasts the test
BOUND = 10.0
JUNK = 300  # queued ahead of the ack: more than the receive loop reads in one scheduler turn
P8 = codec.encode_name("p")


class SlowMember:
    """Member ``p`` on a plain UDP socket in a thread: it answers every ping at once, except
    the one that checks a claim of its death, which it answers only when told to, behind
    ``JUNK`` junk datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.check_seen = threading.Event()
        self.go = threading.Event()
        self.answered = threading.Event()
        self.stop = threading.Event()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65_536)
            except TimeoutError:
                continue
            try:
                packet = codec.decode(data, {})
            except codec.DecodeError:
                continue
            if packet.type != codec.PING or packet.target != "p":
                continue
            claims = [u for u in packet.updates or [] if u[0] == codec.DEAD and u[1] == "p"]
            if claims and not self.answered.is_set():
                self.check_seen.set()
                self.go.wait(BOUND)
                for _ in range(JUNK):
                    self.sock.sendto(b"\xff junk", addr)
                self.sock.sendto(codec.header_seq(codec.ACK, packet.seq), addr)
                self.answered.set()
            else:
                self.sock.sendto(codec.header_seq(codec.ACK, packet.seq), addr)


@contextmanager
def slow_member() -> Iterator[SlowMember]:
    member = SlowMember()
    thread = threading.Thread(target=member.serve, name="slow-member", daemon=True)
    thread.start()
    try:
        yield member
    finally:
        member.stop.set()
        member.go.set()
        thread.join(BOUND)
        member.sock.close()


def gossip(*updates: bytes) -> bytes:
    return codec.HEADER_GOSSIP + bytes((len(updates),)) + b"".join(updates)


async def test_an_ack_queued_during_a_stall_is_read_before_the_claim_check_expires() -> None:
    with slow_member() as member, trio.fail_after(BOUND):
        async with open_swim_node(
            name="a", bind=("127.0.0.1", 0), config=CONFIG, rng=random.Random(7)
        ) as node:
            sender = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            meta = codec.encode_meta(NodeMeta("127.0.0.1", member.address[1], 1))
            await sender.sendto(gossip(codec.encode_alive(P8, 0, meta)), node.address)
            await node.wait_until(lambda: node.protocol.state_of("p") is MemberState.ALIVE)

            # someone says p is suspect, then dead: a member this node suspects gets one
            # round of checking, a ping carrying the claim, which p answers late
            accuser = codec.encode_name("z")
            claims = gossip(codec.encode_suspect(P8, 0, accuser), codec.encode_dead(P8, 0, accuser))
            await sender.sendto(claims, node.address)
            assert await trio.to_thread.run_sync(member.check_seen.wait, BOUND)

            # the stall: this thread (the node's) is off its loop while p's answer arrives
            # behind the junk and the check's deadline passes
            member.go.set()
            assert member.answered.wait(BOUND)
            time.sleep(2 * CONFIG.probe_timeout + 0.2)  # noqa: ASYNC251 (the stall itself)

            stats = node.stats
            await node.wait_until(
                lambda: stats().get("claims_disproved", 0) + stats().get("claims_confirmed", 0)
            )
            assert stats().get("claims_confirmed", 0) == 0 and stats()["claims_disproved"] == 1
            assert node.protocol.state_of("p") is MemberState.SUSPECT
            assert stats()["caught_up"] >= JUNK // 2  # the backlog was read before the verdict
            sender.close()
