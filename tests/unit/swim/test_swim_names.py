"""Two records of one node name: a live twin is a conflict, a stale record is taken over,
and neither starts an incarnation war."""

from __future__ import annotations

import random

from jarvis_trio.swim import codec
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import EventKind, MemberState, NodeMeta
from jarvis_trio.swim.protocol import MAX_NAME_CHECKS, T_MOVE, T_NAME, Effects, SwimProtocol

CFG = SwimConfig(gossip_interval=None, pushpull_interval=None, rejoin_interval=None)


def meta(i: int) -> NodeMeta:
    return NodeMeta(f"10.0.0.{i}", 7946, 8946)


def proto(name: str, i: int, epoch: int = 0) -> SwimProtocol:
    return SwimProtocol(name, meta(i), CFG, random.Random(i), epoch=epoch)


def deliver(fx: Effects, to: SwimProtocol, sender: int, now: float) -> Effects:
    """Every datagram of ``fx`` addressed to ``to``, received from ``meta(sender)``."""
    out = Effects()
    for addr, data in fx.datagrams:
        if addr == to.meta.address:
            got = to.handle_datagram(data, meta(sender).address, now)
            out.datagrams += got.datagrams
            out.events += got.events
            out.timers += got.timers
    return out


def through_silent_move_check(fx: Effects, node: SwimProtocol) -> Effects:
    """Expire every round of the move check ``fx`` started at ``node``: nobody answers at the
    member's old address (see ``SwimProtocol._check_move``)."""
    while checks := [(t, w) for t, w in fx.timers if t[0] == T_MOVE]:
        ((token, when),) = checks
        fx = node.handle_timer(token, when)
    return fx


def conflicts(fx: Effects) -> list[tuple[str, tuple[str, int]]]:
    return [(e.member.name, e.member.address) for e in fx.events if e.kind is EventKind.CONFLICT]


def names_sent(fx: Effects, to: tuple[str, int]) -> set[str]:
    """Names in the push/pull records ``fx`` sends to ``to``."""
    learner = proto("learner", 200)
    for addr, data in fx.datagrams:
        if addr == to and codec.decode(data, {}).type == codec.PUSHPULL:
            learner.handle_datagram(data, meta(99).address, 0.0)
    return {m.name for m in learner.members()} - {"learner"}


def test_a_joiner_keeps_its_record_to_itself_until_a_seed_answered_then_announces() -> None:
    seed, joiner = proto("c", 3), proto("j", 2)
    push = joiner.join([meta(3).address], 0.0)
    assert names_sent(push, meta(3).address) == set()  # nothing said in its name yet
    reply = deliver(push, seed, 2, 0.0)
    assert seed.member("j") is None
    announce = deliver(reply, joiner, 3, 0.1)
    assert joiner.joined and names_sent(announce, meta(3).address) == {"c", "j"}
    assert [codec.decode(d, {}).flags for _, d in announce.datagrams] == [0]  # asks no reply
    learnt = deliver(announce, seed, 2, 0.2)
    assert [(e.kind, e.member.name) for e in learnt.events] == [(EventKind.JOIN, "j")]
    assert learnt.datagrams == []


def test_a_twin_joining_through_the_holder_is_a_conflict_on_both_sides() -> None:
    holder, twin = proto("x", 1, epoch=1), proto("x", 2, epoch=2)
    reply = deliver(twin.join([meta(1).address], 0.0), holder, 2, 0.0)
    shown = deliver(reply, twin, 1, 0.1)  # an answer in its own name, naming x at 10.0.0.1
    assert conflicts(shown) == [("x", meta(1).address)]
    assert twin.name_conflict == meta(1).address and twin.incarnation == 0
    assert names_sent(shown, meta(1).address) == {"x"}  # the twin shows its record to the holder
    answer = deliver(shown, holder, 2, 0.2)
    assert conflicts(answer) == [("x", meta(2).address)]
    assert holder.name_conflict == meta(2).address
    assert holder.incarnation == 0 and holder.epoch == 1  # no bidding, though the twin is newer
    assert holder.stats["refutations"] == 0
    assert conflicts(deliver(answer, twin, 1, 0.3)) == []  # reported once per address
    assert deliver(deliver(answer, twin, 1, 0.3), holder, 2, 0.4).datagrams == []  # and it ends
    assert (holder.stats["name_conflicts"], twin.stats["name_conflicts"]) == (1, 1)


def test_a_twin_joining_through_a_third_node_checks_the_holder_and_tells_no_one_else() -> None:
    holder, twin, seed = proto("x", 1, epoch=1), proto("x", 2, epoch=2), proto("c", 3)
    deliver(deliver(seed.join([meta(1).address], 0.0), holder, 3, 0.0), seed, 1, 0.0)
    assert seed.member("x") is not None
    answer = deliver(twin.join([meta(3).address], 0.1), seed, 2, 0.1)
    check = deliver(answer, twin, 3, 0.2)
    assert conflicts(check) == [] and twin.checking_name
    assert [a for a, _ in check.datagrams] == [meta(1).address]  # a push/pull to the holder only
    assert [token[0] for token, _ in check.timers] == [T_NAME]
    reply = deliver(check, holder, 2, 0.3)
    assert conflicts(reply) == [("x", meta(2).address)]
    assert conflicts(deliver(reply, twin, 1, 0.4)) == [("x", meta(1).address)]
    assert not twin.checking_name and twin.incarnation == 0
    # the twin's newer epoch would outrank the holder: it never reached the seed
    member = seed.member("x")
    assert member is not None and member.address == meta(1).address
    assert holder.incarnation == 0


def test_a_stale_record_of_our_name_elsewhere_is_taken_over_after_silence() -> None:
    seed, reborn = proto("c", 3), proto("x", 2)
    old = codec.encode_alive(codec.encode_name("x"), 5, codec.encode_meta(meta(1)))
    seed.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + old, meta(1).address, 0.0)
    check = deliver(deliver(reborn.join([meta(3).address], 0.1), seed, 2, 0.1), reborn, 3, 0.2)
    ((token, when),) = [(t, w) for t, w in check.timers if t[0] == T_NAME]
    assert when == 0.2 + 2 * CFG.probe_timeout and reborn.checking_name
    expired = reborn.handle_timer(token, when)  # nobody answered at 10.0.0.1
    assert not reborn.checking_name and reborn.name_conflict is None
    # the name moves to another address: in the next epoch (a move within one is refused)
    assert (reborn.epoch, reborn.incarnation) == (1, 0)
    assert reborn.stats["name_takeovers"] == 1
    # it announces itself to the seed at once, which moves the name over once it found
    # nobody at the old address either
    through_silent_move_check(deliver(expired, seed, 2, when), seed)
    member = seed.member("x")
    assert member is not None and (member.epoch, member.incarnation) == (1, 0)
    assert member.address == meta(2).address and member.state is MemberState.ALIVE


def test_a_record_of_an_earlier_life_elsewhere_needs_no_refutation() -> None:
    seed, reborn = proto("c", 3), proto("x", 2, epoch=7)
    old = codec.encode_alive(codec.encode_name("x"), 3 << 32 | 9, codec.encode_meta(meta(1)))
    seed.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + old, meta(1).address, 0.0)
    check = deliver(deliver(reborn.join([meta(3).address], 0.1), seed, 2, 0.1), reborn, 3, 0.2)
    ((token, when),) = [(t, w) for t, w in check.timers if t[0] == T_NAME]
    through_silent_move_check(deliver(reborn.handle_timer(token, when), seed, 2, when), seed)
    assert (reborn.epoch, reborn.incarnation, reborn.stats["refutations"]) == (7, 0, 0)
    member = seed.member("x")
    assert member is not None and member.address == meta(2).address


def test_checks_of_our_name_are_bounded() -> None:
    node = proto("x", 2)
    for i in range(10, 10 + MAX_NAME_CHECKS + 2):
        claim = codec.encode_alive(codec.encode_name("x"), 1, codec.encode_meta(meta(i)))
        node.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + claim, meta(i).address, 0.0)
    assert node.stats["name_checks"] == MAX_NAME_CHECKS
    assert node.stats["drop_name_check_full"] == 2
    assert node.incarnation == 0


def test_a_higher_claim_displaces_a_lower_check_when_the_checks_are_full() -> None:
    """A flood of forged claims keeps the slots full; a claim of a new epoch elsewhere must
    still be checked and refuted, or the others move us to the forged address and declare us
    dead there."""
    node = proto("x", 2)

    def claim(i: int, version: int, now: float) -> Effects:
        record = codec.encode_alive(codec.encode_name("x"), version, codec.encode_meta(meta(i)))
        return node.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + record, meta(i).address, now)

    for i in range(10, 10 + MAX_NAME_CHECKS):
        claim(i, 1, 0.0)
    forged = claim(50, 3 << 32, 0.1)  # a new life of "x" at 10.0.0.50
    assert node.stats["name_checks_displaced"] == 1
    assert node.stats.get("drop_name_check_full", 0) == 0
    claim(51, 1, 0.2)  # no higher than any check still held: dropped
    assert node.stats["drop_name_check_full"] == 1
    ((token, when),) = [(t, w) for t, w in forged.timers if t[0] == T_NAME]
    node.handle_timer(token, when)  # silence at 10.0.0.50: taken over, above the claim
    assert node.stats["name_takeovers"] == 1
    assert node.version > 3 << 32


def test_our_own_push_coming_back_is_not_a_conflict() -> None:
    node = proto("x", 2)
    fx = node.join([meta(9).address], 0.0)
    for _, data in fx.datagrams:
        echo = node.handle_datagram(data, meta(2).address, 0.1)
        assert conflicts(echo) == []
    assert node.name_conflict is None and not node.checking_name


def test_a_dead_record_of_our_name_elsewhere_is_checked_then_outranked() -> None:
    """What others hold after a forged claim moved our name away and the probes there failed:
    the node must still outrank it (by the check's silence), or it stays dead for them."""
    seed, node = proto("c", 3), proto("x", 2)
    deliver(deliver(node.join([meta(3).address], 0.0), seed, 2, 0.0), node, 3, 0.0)
    dead = codec.encode_full(
        MemberState.DEAD, codec.encode_name("x"), 9, codec.encode_meta(meta(1))
    )
    state = codec.header_pushpull(codec.FLAG_REPLY, codec.encode_name("c"), 1) + dead
    check = node.handle_datagram(state, meta(3).address, 1.0)
    assert node.checking_name and node.incarnation == 0
    ((token, when),) = [(t, w) for t, w in check.timers if t[0] == T_NAME]
    node.handle_timer(token, when)
    assert (node.epoch, node.incarnation) == (1, 0) and node.name_conflict is None
