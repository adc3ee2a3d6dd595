"""The protocol core driven by hand: codec, probing, suspicion, refutation, Lifeguard."""

from __future__ import annotations

import random

import pytest

from jarvis_trio.swim import codec
from jarvis_trio.swim.codec import DecodeError
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import EventKind, MemberState, NodeMeta
from jarvis_trio.swim.protocol import (
    T_CLAIM,
    T_FINAL,
    T_PROBE,
    T_PROBE_TIMEOUT,
    T_SUSPECT,
    Address,
    Effects,
    SwimProtocol,
    TimerToken,
)

CFG = SwimConfig(gossip_interval=None, pushpull_interval=None, rejoin_interval=None)


def meta(i: int) -> NodeMeta:
    return NodeMeta(f"10.0.0.{i}", 7946, 8946)


def node(i: int, config: SwimConfig = CFG, peers: int = 0, **kwargs: object) -> SwimProtocol:
    proto = SwimProtocol(f"n{i}", meta(i), config, random.Random(i), **kwargs)  # type: ignore[arg-type]
    entries = [
        (f"n{j}", meta(j), codec.encode_name(f"n{j}"), codec.encode_meta(meta(j)))
        for j in range(peers)
    ]
    proto.bootstrap(entries)
    return proto


def decode(data: bytes) -> codec.Packet:
    return codec.decode(data, {})


def timers_of(fx: Effects, kind: int) -> list[tuple[TimerToken, float]]:
    return [(token, when) for token, when in fx.timers if token[0] == kind]


def probe_tick(proto: SwimProtocol, fx: Effects, now: float) -> Effects:
    ((token, _),) = timers_of(fx, T_PROBE)
    return proto.handle_timer(token, now)


def unanswered(proto: SwimProtocol, data: bytes, addr: Address, now: float) -> Effects:
    """``proto`` handles ``data``; every dead/left claim it checks then meets silence."""
    fx = proto.handle_datagram(data, addr, now)
    pending = timers_of(fx, T_CLAIM)
    while pending:  # every round of the check, until it is confirmed
        token, when = pending.pop()
        after = proto.handle_timer(token, when)
        fx.events += after.events
        pending += timers_of(after, T_CLAIM)
    return fx


# ---------------------------------------------------------------------- codec


def test_codec_round_trips_every_update_kind() -> None:
    n8 = codec.encode_name("node-1")
    m = NodeMeta("2001:db8::1", 7946, 8946, b"\x01" * 32, 2**40)
    piggy = [
        codec.encode_alive(n8, 7, codec.encode_meta(m)),
        codec.encode_suspect(n8, 8, codec.encode_name("accuser")),
        codec.encode_dead(n8, 9, codec.encode_name("accuser")),
        codec.encode_left(n8, 10),
    ]
    data = codec.header_ping(42, n8) + bytes((len(piggy),)) + b"".join(piggy)
    packet = decode(data)
    assert (packet.type, packet.seq, packet.target) == (codec.PING, 42, "node-1")
    assert packet.updates == [
        (codec.ALIVE, "node-1", 7, m, ""),
        (codec.SUSPECT, "node-1", 8, None, "accuser"),
        (codec.DEAD, "node-1", 9, None, "accuser"),
        (codec.LEFT, "node-1", 10, None, ""),
    ]


def test_ping_req_carries_an_ipv4_or_ipv6_target() -> None:
    for host in ("192.0.2.1", "fe80::1"):
        data = codec.header_ping_req(5, codec.encode_address(host, 1234), codec.encode_name("t"))
        packet = decode(data + b"\x00")
        assert packet.target_addr == (host, 1234) and packet.target == "t"


def test_steady_state_sizes() -> None:
    name = "node-0123abcd"  # the default node name shape: node- + 8 hex
    ping = codec.header_ping(1, codec.encode_name(name)) + b"\x00"
    ack = codec.header_seq(codec.ACK, 1) + b"\x00"
    assert len(ping) <= 48 and len(ack) <= 16


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x01", "truncated"),
        (b"\x01\x01", "version"),
        (b"\x02\x63", "type"),
        (b"\x02\x01\x00\x00", "truncated"),  # a ping cut inside its sequence number
        (b"\x02\x01\x00\x00\x00\x01\x00", "malformed"),  # an empty target name
        (b"\x02\x01\x00\x00\x00\x01\x02\xff\xfe\x00", "malformed"),  # not UTF-8
        (b"\x02\x02\x00\x00\x00\x01\x05", "truncated"),  # promises 5 updates, has none
        (b"\x02\x02\x00\x00\x00\x01\x01\x09", "malformed"),  # unknown update kind
        (b"\x02\x02\x00\x00\x00\x01\x00trailing", "malformed"),
        # numbers nothing can act on are refused where they enter
        (b"\x02\x03\x00\x00\x00\x01\x04\x7f\x00\x00\x01\x00\x00\x01t\x00", "range"),  # port 0
        (b"\x02\x03\x00\x00\x00\x01\x04\x00\x00\x00\x00\x1f\x90\x01t\x00", "range"),  # 0.0.0.0
        (b"\x02\x06\x80\x01s\x00\x00", "range"),  # an unknown push/pull flag
        (b"\x02\x05\x01\x04\x01n\xff" + b"\x00" * 11, "range"),  # a left at epoch 2**64-1
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    assert caught.value.reason == reason


def test_protocol_counts_garbage_instead_of_raising() -> None:
    proto = node(0, peers=2)
    rng = random.Random(5)
    for size in range(64):
        proto.handle_datagram(bytes(rng.randrange(256) for _ in range(size)), ("1.2.3.4", 1), 0.0)
    proto.handle_datagram(b"\x01" * 2000, ("1.2.3.4", 1), 0.0)
    drops = sum(v for k, v in proto.stats.items() if k.startswith("drop_"))
    assert drops == 65 and proto.stats["drop_oversized"] == 1


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"\x05\x00", "truncated"),  # a record cut short
        (b"\x01\x00\x01a" + b"\x00" * 20, "malformed"),  # not a FULL record
        (b"\x05\x07\x01a" + b"\x00" * 20, "malformed"),  # no such state
        (b"\x05\x00\x01a" + b"\x00" * 11 + b"\x01\x05" + b"\x00" * 20, "malformed"),  # family
        (b"\x05\x00\x01a" + b"\x00" * 11 + b"\x01\x04" + b"\x00" * 16 + b"\x09", "truncated"),
        # an epoch above 2**63 - 1
        (b"\x05\x00\x01a\x80" + b"\x00" * 10 + b"\x01\x04" + b"\x00" * 16 + b"\x00", "range"),
    ],
)
def test_bad_push_pull_records_are_counted(tail: bytes, reason: str) -> None:
    proto = node(0, peers=2)
    data = codec.header_pushpull(codec.FLAG_FIRST, codec.encode_name("x"), 1) + tail
    assert proto.handle_datagram(data, meta(1).address, 0.0).datagrams == []
    assert proto.stats["drop_" + reason] == 1


def test_hmac_seals_and_refuses_forgeries() -> None:
    key = b"k" * 20
    a = node(0, peers=2, key=key, cluster_name="prod")
    b = node(1, peers=2, key=key, cluster_name="prod")
    other_cluster = node(1, peers=2, key=key, cluster_name="staging")
    fx = a.start(0.0, phase=0.0)
    fx = probe_tick(a, fx, 0.0)
    ((addr, data),) = fx.datagrams
    assert addr == meta(1).address
    reply = b.handle_datagram(data, meta(0).address, 0.01)
    assert len(reply.datagrams) == 1
    assert other_cluster.handle_datagram(data, meta(0).address, 0.01).datagrams == []
    assert other_cluster.stats["drop_auth"] == 1
    tampered = data[:-1] + bytes((data[-1] ^ 1,))
    assert b.handle_datagram(tampered, meta(0).address, 0.02).datagrams == []
    assert b.handle_datagram(data[: codec.TAG_SIZE], meta(0).address, 0.02).datagrams == []
    assert b.stats["drop_auth"] == 2


# ---------------------------------------------------------------------- probing


def test_round_robin_probes_every_member_once_per_pass() -> None:
    proto = node(0, peers=9)
    fx = proto.start(0.0, phase=0.0)
    targets: list[Address] = []
    now = 0.0
    for _ in range(8 * 5):
        fx = probe_tick(proto, fx, now)
        ping = next(d for d in fx.datagrams if decode(d[1]).type == codec.PING)
        targets.append(ping[0])
        seq = decode(ping[1]).seq
        proto.handle_datagram(codec.header_seq(codec.ACK, seq) + b"\x00", ping[0], now + 0.01)
        now += 1.0
    passes = [targets[i : i + 8] for i in range(0, len(targets), 8)]
    everyone = {meta(j).address for j in range(1, 9)}
    assert all(set(p) == everyone for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes


def test_newcomer_is_probed_within_two_passes() -> None:
    proto = node(0, peers=5)
    fx = proto.start(0.0, phase=0.0)
    alive = codec.encode_alive(codec.encode_name("n9"), 0, codec.encode_meta(meta(9)))
    join = proto.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + alive, meta(1).address, 0.1)
    assert [e.kind for e in join.events] == [EventKind.JOIN]
    seen = []
    now = 0.0
    for _ in range(2 * 5 - 1):
        fx = probe_tick(proto, fx, now)
        seen += [a for a, d in fx.datagrams if decode(d).type == codec.PING]
        now += 1.0
    assert meta(9).address in seen


def test_failed_probe_goes_indirect_then_suspects_within_the_period() -> None:
    proto = node(0, peers=6)
    fx = proto.start(0.0, phase=0.0)
    fx = probe_tick(proto, fx, 0.0)
    ((target, _ping),) = fx.datagrams
    ((timeout_token, when),) = timers_of(fx, T_PROBE_TIMEOUT)
    assert when == pytest.approx(0.5)
    fx2 = proto.handle_timer(timeout_token, 0.5)
    reqs = [(a, decode(d)) for a, d in fx2.datagrams]
    assert len(reqs) == 3 and all(p.type == codec.PING_REQ for _, p in reqs)
    assert all(p.target_addr == target and a != target for a, p in reqs)
    # helpers nack: health rises by what was missed (3 expected, 1 received)
    proto.handle_datagram(codec.header_seq(codec.NACK, reqs[0][1].seq) + b"\x00", reqs[0][0], 0.9)
    fx3 = probe_tick(proto, fx, 1.0)
    assert proto.health.score == 2
    name = f"n{int(target[0].rsplit('.', 1)[1])}"
    assert proto.state_of(name) is MemberState.SUSPECT
    assert [e.kind for e in fx3.events] == [EventKind.SUSPECT]
    # Lifeguard: the suspect is told directly, in a gossip datagram addressed to it
    notices = [
        decode(d) for a, d in fx3.datagrams if a == target and decode(d).type == codec.GOSSIP
    ]
    assert notices and notices[0].updates[0][:2] == (codec.SUSPECT, name)  # type: ignore[index]
    # and the next probe interval is stretched by the health multiplier
    ((_, next_tick),) = timers_of(fx3, T_PROBE)
    assert next_tick == pytest.approx(1.0 + 3 * 1.0)


def test_indirect_ack_saves_the_member() -> None:
    proto = node(0, peers=6)
    fx = proto.start(0.0, phase=0.0)
    fx = probe_tick(proto, fx, 0.0)
    ((_, ping),) = fx.datagrams
    seq = decode(ping).seq
    ((token, _),) = timers_of(fx, T_PROBE_TIMEOUT)
    fx2 = proto.handle_timer(token, 0.5)
    helper = fx2.datagrams[0][0]
    proto.handle_datagram(codec.header_seq(codec.ACK, seq) + b"\x00", helper, 0.7)
    fx3 = probe_tick(proto, fx, 1.0)
    assert not fx3.events and proto.health.score == 0


def test_helper_relays_the_ack_or_nacks() -> None:
    helper = node(1, peers=4)
    req = codec.header_ping_req(77, codec.encode_address("10.0.0.2", 7946), codec.encode_name("n2"))
    fx = helper.handle_datagram(req + b"\x00", meta(0).address, 0.0)
    ((addr, ping),) = fx.datagrams
    assert addr == meta(2).address and decode(ping).target == "n2"
    relay_seq = decode(ping).seq
    fx2 = helper.handle_datagram(codec.header_seq(codec.ACK, relay_seq) + b"\x00", addr, 0.1)
    ((back, ack),) = fx2.datagrams
    assert back == meta(0).address and decode(ack).type == codec.ACK and decode(ack).seq == 77
    # a second request that gets no answer produces a nack at 80 % of the probe timeout
    fx = helper.handle_datagram(req + b"\x00", meta(0).address, 1.0)
    ((token, when),) = [(t, w) for t, w in fx.timers]
    assert when == pytest.approx(1.0 + 0.4)
    ((back, nack),) = helper.handle_timer(token, when).datagrams
    assert decode(nack).type == codec.NACK and decode(nack).seq == 77


def test_ping_for_another_name_is_not_acked() -> None:
    proto = node(3, peers=4)
    ping = codec.header_ping(9, codec.encode_name("previous-owner")) + b"\x00"
    assert proto.handle_datagram(ping, meta(0).address, 0.0).datagrams == []
    assert proto.stats["drop_misdirected"] == 1


# ---------------------------------------------------------------------- suspicion and refutation


def suspect_update(name: str, inc: int, accuser: str) -> bytes:
    body = codec.encode_suspect(codec.encode_name(name), inc, codec.encode_name(accuser))
    return codec.HEADER_GOSSIP + b"\x01" + body


def test_confirmations_shrink_the_suspicion_timeout() -> None:
    proto = node(0, peers=100)  # min = 4 * log10(100) = 8 s, max 48 s, 2 confirmations expected
    fx = proto.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 10.0)
    ((token, deadline),) = timers_of(fx, T_SUSPECT)
    assert deadline == pytest.approx(10.0 + 48.0)
    fx = proto.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 11.0)
    assert timers_of(fx, T_SUSPECT) == []  # the same accuser again is no confirmation
    fx = proto.handle_datagram(suspect_update("n5", 0, "n2"), meta(2).address, 11.0)
    ((_, deadline),) = timers_of(fx, T_SUSPECT)
    assert deadline == pytest.approx(10.0 + 48.0 - 40.0 * 0.6309297535714575)
    fx = proto.handle_datagram(suspect_update("n5", 0, "n3"), meta(3).address, 12.0)
    ((token, deadline),) = timers_of(fx, T_SUSPECT)
    assert deadline == pytest.approx(18.0)
    assert proto.handle_timer(token, 17.0).datagrams == []  # too early: ignored
    fx = proto.handle_timer(token, deadline)
    # the final check: a ping carrying the suspicion, and k ping-reqs
    kinds = sorted(decode(d).type for _, d in fx.datagrams)
    assert kinds == [codec.PING, codec.PING_REQ, codec.PING_REQ, codec.PING_REQ]
    ((final, when),) = timers_of(fx, T_FINAL)
    assert when == pytest.approx(deadline + 1.0) and fx.events == []
    fx = proto.handle_timer(final, when)
    assert [(e.kind, e.member.name) for e in fx.events] == [(EventKind.DEAD, "n5")]


def test_final_check_saves_a_member_that_refuted_unheard() -> None:
    proto = node(0, peers=10)
    victim = node(5, peers=10)
    victim.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 1.0)
    assert victim.incarnation == 1  # refuted; suppose nobody told node 0
    for seq in range(20):  # the refutation's copies are all spent elsewhere
        victim.handle_datagram(
            codec.header_ping(seq, codec.encode_name("n5")) + b"\x00", meta(2).address, 1.0
        )
    fx = proto.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 1.0)
    ((token, deadline),) = timers_of(fx, T_SUSPECT)
    fx = proto.handle_timer(token, deadline)
    ((addr, ping),) = [(a, d) for a, d in fx.datagrams if decode(d).type == codec.PING]
    assert addr == meta(5).address
    ((_, ack),) = victim.handle_datagram(ping, meta(0).address, deadline + 0.01).datagrams
    assert victim.stats["restated"] == 1
    fx = proto.handle_datagram(ack, meta(5).address, deadline + 0.02)
    assert [(e.kind, e.member.incarnation) for e in fx.events] == [(EventKind.ALIVE, 1)]
    assert proto.state_of("n5") is MemberState.ALIVE
    assert proto.handle_timer(token, deadline + 0.5).datagrams == []  # the old timer is stale


def test_without_lifeguard_the_timeout_is_fixed() -> None:
    proto = node(0, SwimConfig(lifeguard=False, gossip_interval=None), peers=100)
    fx = proto.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 10.0)
    ((_, deadline),) = timers_of(fx, T_SUSPECT)
    assert deadline == pytest.approx(18.0)


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    proto = node(5, peers=10)
    fx = proto.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 1.0)
    assert proto.incarnation == 1 and proto.health.score == 1
    out = proto.handle_datagram(
        codec.header_ping(1, codec.encode_name("n5")) + b"\x00", meta(1).address, 1.1
    )
    ((_, ack),) = out.datagrams
    updates = decode(ack).updates
    assert updates is not None and updates[0][:3] == (codec.ALIVE, "n5", 1)
    assert fx.events == []


def test_alive_with_higher_incarnation_clears_suspicion() -> None:
    proto = node(0, peers=10)
    proto.handle_datagram(suspect_update("n5", 0, "n1"), meta(1).address, 1.0)
    alive = codec.encode_alive(codec.encode_name("n5"), 1, codec.encode_meta(meta(5)))
    fx = proto.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + alive, meta(5).address, 2.0)
    assert [e.kind for e in fx.events] == [EventKind.ALIVE]
    assert proto.state_of("n5") is MemberState.ALIVE


def test_metadata_change_is_an_event_and_needs_a_new_incarnation() -> None:
    proto = node(0, peers=10)
    newer = NodeMeta("10.0.0.5", 7946, 9999, b"key", 3)
    same_inc = codec.encode_alive(codec.encode_name("n5"), 0, codec.encode_meta(newer))
    fx = proto.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + same_inc, meta(5).address, 1.0)
    assert fx.events == []
    bumped = codec.encode_alive(codec.encode_name("n5"), 1, codec.encode_meta(newer))
    fx = proto.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + bumped, meta(5).address, 1.0)
    assert [(e.kind, e.member.meta) for e in fx.events] == [(EventKind.METADATA, newer)]


def test_update_metadata_bumps_incarnation_and_is_gossiped() -> None:
    proto = node(0, peers=3)
    proto.update_metadata(NodeMeta("10.0.0.0", 7946, 8946, b"", 4), 0.0)
    assert proto.incarnation == 1 and proto.pending_broadcasts() == 1


def test_leave_gossips_left_and_stops_probing() -> None:
    proto = node(0, peers=6)
    fx = proto.start(0.0, phase=0.0)
    out = proto.leave(0.5)
    assert len(out.datagrams) == 4
    assert all(decode(d).updates[0][:2] == (codec.LEFT, "n0") for _, d in out.datagrams)  # type: ignore[index]
    assert probe_tick(proto, fx, 1.0).datagrams == []
    receiver = node(1, peers=6)
    fx = receiver.handle_datagram(out.datagrams[0][1], meta(0).address, 0.6)
    assert [e.kind for e in fx.events] == [EventKind.LEFT]


def test_dead_members_are_reaped_after_the_retention() -> None:
    cfg = SwimConfig(
        gossip_interval=None, pushpull_interval=None, rejoin_interval=None, dead_retention=5.0
    )
    proto = node(0, cfg, peers=4)
    dead = codec.encode_dead(codec.encode_name("n2"), 0, codec.encode_name("n1"))
    unanswered(proto, codec.HEADER_GOSSIP + b"\x01" + dead, meta(1).address, 1.0)
    assert proto.state_of("n2") is MemberState.DEAD
    fx = proto.start(2.0, phase=0.0)
    fx = probe_tick(proto, fx, 3.0)
    assert proto.state_of("n2") is MemberState.DEAD
    for t in (4.0, 5.0, 6.0, 7.0, 8.0):  # declared dead at 3.0 (two silent check rounds)
        fx = probe_tick(proto, fx, t)
    assert proto.state_of("n2") is None


def test_push_pull_reports_dead_as_suspect_and_the_victim_refutes() -> None:
    a = node(0, peers=4)
    dead = codec.encode_dead(codec.encode_name("n2"), 0, codec.encode_name("n0"))
    unanswered(a, codec.HEADER_GOSSIP + b"\x01" + dead, meta(1).address, 1.0)
    victim = node(2, peers=4)
    fx = victim.join([meta(0).address], 2.0)
    ((_addr, push),) = fx.datagrams
    reply = a.handle_datagram(push, meta(2).address, 2.1)
    assert reply.datagrams and all(decode(d).flags & codec.FLAG_REPLY for _, d in reply.datagrams)
    assert a.state_of("n2") is MemberState.DEAD  # the joiner's push says nothing of itself
    announce = []
    for _, data in reply.datagrams:
        out = victim.handle_datagram(data, meta(0).address, 2.2)
        announce += [d for addr, d in out.datagrams if addr == meta(0).address]
    assert victim.incarnation == 1  # it learned it was declared dead, and refuted
    # answered, it announces itself with alive(1), which brings it back at the other side
    fx = a.handle_datagram(announce[0], meta(2).address, 3.1)
    assert [e.kind for e in fx.events] == [EventKind.JOIN]
    assert a.state_of("n2") is MemberState.ALIVE


def test_push_pull_is_chunked_under_the_datagram_limit() -> None:
    cfg = SwimConfig(gossip_interval=None, max_datagram=512)
    big = node(0, cfg, peers=200)
    fx = big.join([meta(1).address], 0.0)
    assert len(fx.datagrams) > 5
    assert all(len(d) <= 512 for _, d in fx.datagrams)
    # every record but its own, which a joiner keeps to itself until a seed answered
    assert sum(decode(d).count for _, d in fx.datagrams) == 199
    assert [bool(decode(d).flags & codec.FLAG_FIRST) for _, d in fx.datagrams].count(True) == 1
    learner = node(250, cfg)
    for _, data in fx.datagrams:
        learner.handle_datagram(data, meta(0).address, 0.1)
    assert learner.num_live() == 200


def test_piggyback_fills_the_datagram() -> None:
    cfg = SwimConfig(gossip_interval=None, max_datagram=600)
    proto = node(0, cfg, peers=3)
    for j in range(100, 160):
        alive = codec.encode_alive(codec.encode_name(f"n{j}"), 0, codec.encode_meta(meta(j % 250)))
        proto.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + alive, meta(1).address, 0.0)
    out = proto.handle_datagram(
        codec.header_ping(1, codec.encode_name("n0")) + b"\x00", meta(1).address, 0.1
    )
    ((_, ack),) = out.datagrams
    assert 600 - 40 < len(ack) <= 600


def test_an_update_rides_lambda_log_n_datagrams_then_stops() -> None:
    proto = node(0, peers=10)  # n = 10 alive: 4 * ceil(log10(11)) = 8 transmissions
    proto.update_metadata(NodeMeta("10.0.0.0", 7946, 8946, b"", 1), 0.0)
    carried = 0
    for seq in range(20):
        ping = codec.header_ping(seq, codec.encode_name("n0")) + b"\x00"
        ((_, ack),) = proto.handle_datagram(ping, meta(1).address, 0.1 * seq).datagrams
        carried += len(decode(ack).updates or [])
    assert carried == 8 and proto.pending_broadcasts() == 0


def test_a_member_held_down_that_pings_us_is_told_on_the_ack() -> None:
    """Whoever believes a forged *left* or *dead* answers the victim's next ping with it, so
    the victim refutes within its probe round instead of at the next anti-entropy."""
    proto = node(0, peers=3)
    n1 = codec.encode_name("n1")
    for forged in (codec.encode_left(n1, 0), codec.encode_dead(n1, 0, n1)):
        unanswered(proto, codec.HEADER_GOSSIP + b"\x01" + forged, meta(2).address, 1.0)
    assert proto.state_of("n1") is MemberState.LEFT
    ping = codec.header_ping(77, codec.encode_name("n0")) + b"\x00"
    ((addr, ack),) = proto.handle_datagram(ping, meta(1).address, 1.1).datagrams
    packet = decode(ack)
    assert addr == meta(1).address and (packet.type, packet.seq) == (codec.ACK, 77)
    assert packet.updates is not None and packet.updates[0] == (codec.LEFT, "n1", 0, None, "")
    assert proto.stats["told_down"] == 1
    # once it refuted, it is no longer held down: its pings are plain pings again
    alive = codec.encode_alive(n1, 1, codec.encode_meta(meta(1)))
    proto.handle_datagram(codec.HEADER_GOSSIP + b"\x01" + alive, meta(1).address, 1.2)
    assert proto.state_of("n1") is MemberState.ALIVE
    proto.handle_datagram(ping, meta(1).address, 1.3)
    assert proto.stats["told_down"] == 1
