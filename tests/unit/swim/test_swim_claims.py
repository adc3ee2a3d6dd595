"""A *dead* or *left* record heard from a third party about a member held alive is checked
before it is believed: a forged one costs a ping, not a member."""

from __future__ import annotations

from jarvis_trio.swim import codec
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import EventKind, MemberState
from jarvis_trio.swim.protocol import T_CLAIM, T_MOVE

from .test_swim_protocol import CFG, decode, meta, node, timers_of, unanswered

N1 = codec.encode_name("n1")
N2 = codec.encode_name("n2")


def gossip(*updates: bytes) -> bytes:
    return codec.HEADER_GOSSIP + bytes((len(updates),)) + b"".join(updates)


def test_a_dead_claim_is_checked_and_an_ack_disproves_it() -> None:
    proto = node(0, peers=4)
    fx = proto.handle_datagram(gossip(codec.encode_dead(N1, 0, N2)), meta(3).address, 1.0)
    assert proto.state_of("n1") is MemberState.ALIVE and fx.events == []
    # the accused gets a ping carrying the claim, and ping-reqs go to helpers
    pings = [(addr, decode(d)) for addr, d in fx.datagrams]
    direct = [p for addr, p in pings if addr == meta(1).address]
    assert len(direct) == 1 and direct[0].type == codec.PING and direct[0].target == "n1"
    assert direct[0].updates is not None and direct[0].updates[0][:3] == (codec.DEAD, "n1", 0)
    helpers = [p for addr, p in pings if addr != meta(1).address]
    assert helpers and all(p.type == codec.PING_REQ and p.target == "n1" for p in helpers)
    ((token, when),) = timers_of(fx, T_CLAIM)
    assert when == 1.0 + 2 * CFG.probe_timeout

    # the accused hears the claim on the ping and refutes on its ack
    victim = node(1, peers=4)
    (ack,) = victim.handle_datagram(
        codec.header_ping(direct[0].seq, N1) + b"\x01" + codec.encode_dead(N1, 0, N2),
        meta(0).address,
        1.01,
    ).datagrams
    assert victim.incarnation == 1
    back = proto.handle_datagram(ack[1], meta(1).address, 1.02)
    assert proto.state_of("n1") is MemberState.ALIVE and proto.member("n1").incarnation == 1  # type: ignore[union-attr]
    assert all(e.kind is not EventKind.DEAD for e in back.events)
    assert proto.handle_timer(token, when).events == []  # answered: the timer is stale
    assert proto.stats["claims_disproved"] == 1 and proto.stats["claims_confirmed"] == 0


def test_silence_confirms_the_claim() -> None:
    """Two silent rounds about a member held alive; one about a member suspected too."""
    proto = node(0, peers=4)
    fx = proto.handle_datagram(gossip(codec.encode_dead(N1, 0, N2)), meta(3).address, 1.0)
    ((token, when),) = timers_of(fx, T_CLAIM)
    again = proto.handle_timer(token, when)
    assert again.events == [] and proto.stats["claims_rechecked"] == 1
    assert any(addr == meta(1).address for addr, _ in again.datagrams)  # pinged again
    ((token, when),) = timers_of(again, T_CLAIM)
    assert when == 1.0 + 4 * CFG.probe_timeout
    out = proto.handle_timer(token, when)
    assert [e.kind for e in out.events] == [EventKind.DEAD]
    assert proto.state_of("n1") is MemberState.DEAD
    assert proto.stats["claims_confirmed"] == 1

    proto.handle_datagram(gossip(codec.encode_suspect(N2, 0, N1)), meta(3).address, 2.0)
    assert proto.state_of("n2") is MemberState.SUSPECT
    fx = proto.handle_datagram(gossip(codec.encode_dead(N2, 0, N1)), meta(3).address, 2.1)
    ((token, when),) = timers_of(fx, T_CLAIM)
    assert [e.kind for e in proto.handle_timer(token, when).events] == [EventKind.DEAD]


def test_claims_during_a_check_join_it() -> None:
    proto = node(0, peers=4)
    first = proto.handle_datagram(gossip(codec.encode_dead(N1, 0, N2)), meta(3).address, 1.0)
    again = proto.handle_datagram(
        gossip(codec.encode_left(N1, 1), codec.encode_dead(N1, 0, N2)), meta(2).address, 1.1
    )
    assert timers_of(again, T_CLAIM) == [] and again.datagrams == []
    assert proto.stats["claims_joined"] == 2
    ((token, when),) = timers_of(first, T_CLAIM)
    ((token, when),) = timers_of(proto.handle_timer(token, when), T_CLAIM)  # a second round
    out = proto.handle_timer(token, when)  # the newest claim wins: left at incarnation 1
    assert [e.kind for e in out.events] == [EventKind.LEFT]
    assert proto.member("n1").incarnation == 1  # type: ignore[union-attr]


def test_checks_are_bounded() -> None:
    proto = node(0, SwimConfig(gossip_interval=None, max_relays=2), peers=6)
    for j in (1, 2, 3):
        proto.handle_datagram(
            gossip(codec.encode_dead(codec.encode_name(f"n{j}"), 0, N2)), meta(5).address, 1.0
        )
    assert proto.stats["claims_checked"] == 2 and proto.stats["drop_claims_full"] == 1
    assert proto.state_of("n3") is MemberState.ALIVE


def test_a_left_heard_first_hand_is_believed_at_once() -> None:
    proto = node(0, peers=4)
    fx = proto.handle_datagram(gossip(codec.encode_left(N1, 0)), meta(1).address, 1.0)
    assert [e.kind for e in fx.events] == [EventKind.LEFT]
    assert timers_of(fx, T_CLAIM) == []


def test_a_relayed_left_is_confirmed_by_the_leaving_nodes_ack() -> None:
    """A leaving node puts its *left* record first on every ack: a relayed *left* is
    confirmed within a round trip while the node is still up."""
    proto = node(0, peers=4)
    leaver = node(1, peers=4)
    leaver.leave(1.0)
    fx = proto.handle_datagram(gossip(codec.encode_left(N1, 0)), meta(2).address, 1.1)
    assert proto.state_of("n1") is MemberState.ALIVE
    ((_, ping),) = [(a, d) for a, d in fx.datagrams if a == meta(1).address]
    (ack,) = leaver.handle_datagram(ping, meta(0).address, 1.11).datagrams
    assert decode(ack[1]).updates[0][:2] == (codec.LEFT, "n1")  # type: ignore[index]
    out = proto.handle_datagram(ack[1], meta(1).address, 1.12)
    assert [e.kind for e in out.events] == [EventKind.LEFT]
    assert proto.state_of("n1") is MemberState.LEFT


def test_a_node_keeps_its_own_verdicts() -> None:
    """Claims about members already down, or about this node, go the usual way."""
    proto = node(0, peers=4)
    unanswered(proto, gossip(codec.encode_dead(N1, 0, N2)), meta(3).address, 1.0)
    again = proto.handle_datagram(gossip(codec.encode_left(N1, 0)), meta(3).address, 2.0)
    assert timers_of(again, T_CLAIM) == [] and proto.state_of("n1") is MemberState.DEAD
    me = proto.handle_datagram(
        gossip(codec.encode_dead(codec.encode_name("n0"), 0, N2)), meta(3).address, 2.1
    )
    assert timers_of(me, T_CLAIM) == [] and proto.incarnation == 1  # refuted at once


def test_check_claims_off_is_swims_blind_belief() -> None:
    proto = node(0, SwimConfig(gossip_interval=None, check_claims=False), peers=4)
    fx = proto.handle_datagram(gossip(codec.encode_dead(N1, 0, N2)), meta(3).address, 1.0)
    assert [e.kind for e in fx.events] == [EventKind.DEAD] and timers_of(fx, T_CLAIM) == []


def test_a_record_moving_a_member_within_its_life_is_refused() -> None:
    """Forged alive records that move a live member elsewhere (where probes find nobody, and
    where a check of a forged death then finds nobody either) are refused; a new epoch, a
    restart, may come from anywhere, and is checked where the member is now first."""
    proto = node(0, peers=4)
    elsewhere = codec.encode_meta(meta(9))
    fx = proto.handle_datagram(gossip(codec.encode_alive(N1, 5, elsewhere)), meta(3).address, 1.0)
    assert fx.events == [] and proto.stats["drop_moved"] == 1
    member = proto.member("n1")
    assert member is not None and member.address == meta(1).address and member.incarnation == 0


def test_a_move_to_a_new_life_elsewhere_is_taken_after_two_silent_rounds() -> None:
    """A restart at another address: the old address answers nothing, twice, and the
    member moves."""
    proto = node(0, peers=4)
    reborn = gossip(codec.encode_alive(N1, 1 << 32, codec.encode_meta(meta(9))))
    fx = proto.handle_datagram(reborn, meta(9).address, 1.0)
    assert fx.events == [] and proto.member("n1").address == meta(1).address  # type: ignore[union-attr]
    pings = [(addr, decode(d)) for addr, d in fx.datagrams]
    direct = [p for addr, p in pings if addr == meta(1).address]
    assert len(direct) == 1 and direct[0].type == codec.PING and direct[0].target == "n1"
    assert any(p.type == codec.PING_REQ and p.target == "n1" for addr, p in pings)
    ((token, when),) = timers_of(fx, T_MOVE)
    again = proto.handle_timer(token, when)
    assert again.events == [] and any(addr == meta(1).address for addr, _ in again.datagrams)
    ((token, when),) = timers_of(again, T_MOVE)
    assert when == 1.0 + 4 * CFG.probe_timeout
    proto.handle_timer(token, when)
    member = proto.member("n1")
    assert member is not None and member.address == meta(9).address and member.epoch == 1
    assert proto.stats["moves_confirmed"] == 1


def test_a_forged_move_of_a_live_member_is_refused_when_it_answers() -> None:
    """A forged alive of a new epoch at a forged address: the member answers at its
    address, and the record is refused there and then."""
    forged = codec.encode_alive(N1, 7 << 32, codec.encode_meta(meta(9)))
    proto = node(0, peers=4)
    fx = proto.handle_datagram(gossip(forged), meta(3).address, 1.0)
    ((token, when),) = timers_of(fx, T_MOVE)
    (ping,) = [decode(d) for addr, d in fx.datagrams if addr == meta(1).address]
    victim = node(1, peers=4)
    (ack,) = victim.handle_datagram(
        codec.header_ping(ping.seq, N1), meta(0).address, 1.01
    ).datagrams
    proto.handle_datagram(ack[1], meta(1).address, 1.02)
    assert proto.stats["moves_refused"] == 1 and proto.handle_timer(token, when).events == []
    member = proto.member("n1")
    assert member is not None and member.address == meta(1).address and member.epoch == 0
    # later records of the move join no check: a new one starts, and is refused the same way
    assert proto.stats["moves_checked"] == 1


def test_a_live_member_moved_by_a_forged_new_epoch_takes_its_address_back() -> None:
    """When a forged move was taken after all (the member silent through the check, say, its
    process starved), the member, hearing a suspicion of that epoch about itself, refutes in
    the epoch after it: a refutation within the forged epoch would be refused as a move, and
    the holder would declare a live member dead for good."""
    forged_epoch = 7
    forged = codec.encode_alive(N1, forged_epoch << 32, codec.encode_meta(meta(9)))
    holder = node(0, peers=3)
    fx = holder.handle_datagram(gossip(forged), meta(9).address, 1.0)
    for _ in range(2):  # the member stays silent through both rounds of the check
        ((token, when),) = timers_of(fx, T_MOVE)
        fx = holder.handle_timer(token, when)
    moved = holder.member("n1")
    assert moved is not None and moved.address == meta(9).address

    # the holder probes the forged address, hears nothing, and its suspicion is gossiped
    # until it reaches the real n1 (here: on a ping from n2, carrying it)
    victim = node(1, peers=3)
    suspicion = codec.encode_suspect(N1, forged_epoch << 32, codec.encode_name("n0"))
    (ack,) = victim.handle_datagram(
        codec.header_ping(1, N1) + b"\x01" + suspicion, meta(2).address, 2.0
    ).datagrams
    assert victim.epoch == forged_epoch + 1 and victim.incarnation == 0

    # its refutation, riding on the ack, puts it back at its real address at the holder
    # (once more after a check at the forged address, where nobody answers)
    fx = holder.handle_datagram(ack[1], meta(1).address, 2.1)
    ((token, when),) = timers_of(fx, T_MOVE)
    fx = holder.handle_timer(token, when)
    ((token, when),) = timers_of(fx, T_MOVE)
    fx = holder.handle_timer(token, when)
    back = holder.member("n1")
    assert back is not None and back.address == meta(1).address
    assert back.state is MemberState.ALIVE and back.epoch == forged_epoch + 1
    assert holder.stats["drop_moved"] == 0 and all(e.kind is not EventKind.DEAD for e in fx.events)


def test_a_refutation_within_the_own_epoch_stays_in_it() -> None:
    """Accusations of the node's own epoch cost one incarnation, not a new epoch."""
    victim = node(1, peers=3)
    victim.handle_datagram(
        gossip(codec.encode_suspect(N1, 0, codec.encode_name("n0"))), meta(0).address, 1.0
    )
    assert victim.epoch == 0 and victim.incarnation == 1 and victim.stats["epoch_moves"] == 0
