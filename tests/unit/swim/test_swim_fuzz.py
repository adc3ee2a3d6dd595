"""Property: no datagram, however hostile, makes the SWIM core raise.

The whole inbound path runs (size check, keyring, decode, merge rules, effects, the timers the
effects arm), with and without a cluster key, over three kinds of input: well-formed
datagrams whose every numeric field takes extreme values (versions at the last incarnation,
the last epoch, sequence numbers at 2**32 - 1, ports at 65535, directory versions at
2**64 - 1), those datagrams mutated (bytes flipped, cut, extended), and raw bytes. Beyond
"nothing raises", every datagram the core sends must decode at a peer (so the node never
emits what would make another node drop it), and the local node never believes itself dead.
Examples are derandomized: a failure prints the datagrams that caused it.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_trio.swim import codec
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.keyring import Keyring
from jarvis_trio.swim.members import MAX_EPOCH, MAX_INC, MAX_VERSION, MemberState, NodeMeta
from jarvis_trio.swim.protocol import SwimProtocol

KEY = b"a-cluster-secret-of-32-characters"
PEERS = ["n1", "n2", "n3"]
EPOCH = 1_700_000_000_000 << 16
CONFIG = SwimConfig(max_datagram=1400)
FUZZ = settings(max_examples=120, deadline=None, derandomize=True)


def meta(i: int) -> NodeMeta:
    return NodeMeta(f"127.0.0.{i + 1}", 7946 + i, 8946 + i)


def fresh(key: bytes | None) -> SwimProtocol:
    proto = SwimProtocol("n0", meta(0), CONFIG, random.Random(0), epoch=EPOCH, key=key)
    proto.bootstrap(
        (n, meta(i + 1), codec.encode_name(n), codec.encode_meta(meta(i + 1)))
        for i, n in enumerate(PEERS)
    )
    proto.start(0.0, phase=0.0)
    return proto


# ---------------------------------------------------------------- strategies of fields
U32_EDGES = [0, 1, 2**31, MAX_INC - 1, MAX_INC]
versions = st.one_of(
    st.sampled_from(
        [
            0,
            1,
            MAX_INC,
            EPOCH << 32,
            (EPOCH << 32) | MAX_INC,
            ((EPOCH + 1) << 32) | MAX_INC,
            (MAX_EPOCH << 32) | (MAX_INC - 1),
            MAX_VERSION - 1,
            MAX_VERSION,
        ]
    ),
    st.integers(0, MAX_VERSION),
)
u32 = st.one_of(st.sampled_from(U32_EDGES), st.integers(0, MAX_INC))
names = st.one_of(
    st.sampled_from(["n0", *PEERS, "x" * 255, "é" * 127]),
    st.text(min_size=1, max_size=20).filter(lambda t: 0 < len(t.encode()) <= 255),
)
hosts = st.sampled_from(["127.0.0.1", "10.0.0.9", "255.255.255.255", "::1", "fe80::1"])
ports = st.one_of(st.sampled_from([1, 65535]), st.integers(1, 65535))
metas = st.builds(
    NodeMeta,
    hosts,
    ports,
    st.one_of(st.sampled_from([0, 65535]), st.integers(0, 65535)),
    st.binary(max_size=255),
    st.one_of(st.sampled_from([0, 2**64 - 1]), st.integers(0, 2**64 - 1)),
)


@st.composite
def updates(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["alive", "suspect", "dead", "left"]))
    name8, ver = codec.encode_name(draw(names)), draw(versions)
    if kind == "alive":
        return codec.encode_alive(name8, ver, codec.encode_meta(draw(metas)))
    if kind == "left":
        return codec.encode_left(name8, ver)
    accuser8 = codec.encode_name(draw(names))
    encode = codec.encode_suspect if kind == "suspect" else codec.encode_dead
    return encode(name8, ver, accuser8)


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["ping", "ack", "nack", "ping_req", "gossip", "pushpull"]))
    if kind == "pushpull":
        records = draw(
            st.lists(
                st.tuples(st.sampled_from(list(MemberState)), names, versions, metas), max_size=6
            )
        )
        body = b"".join(
            codec.encode_full(state, codec.encode_name(n), v, codec.encode_meta(m))
            for state, n, v, m in records
        )
        flags = draw(st.sampled_from([0, codec.FLAG_REPLY, codec.FLAG_FIRST]))
        return codec.header_pushpull(flags, codec.encode_name(draw(names)), len(records)) + body
    if kind == "ping":
        header = codec.header_ping(draw(u32), codec.encode_name(draw(names)))
    elif kind in ("ack", "nack"):
        header = codec.header_seq(codec.ACK if kind == "ack" else codec.NACK, draw(u32))
    elif kind == "ping_req":
        address = codec.encode_address(draw(hosts), draw(ports))
        header = codec.header_ping_req(draw(u32), address, codec.encode_name(draw(names)))
    else:
        header = codec.HEADER_GOSSIP
    piggy = draw(st.lists(updates(), max_size=5))
    return header + bytes((len(piggy),)) + b"".join(piggy)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(well_formed()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "extend", "set"]))
        if op == "cut" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] = (
                draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF])) if op == "set" else data[at] ^ 0xFF
            )
    return bytes(data)


datagrams = st.one_of(well_formed(), mutated(), st.binary(max_size=1500))


# ---------------------------------------------------------------- the property
def exercise(proto: SwimProtocol, inputs: list[bytes], key: bytes | None) -> None:
    """Feed ``inputs`` (sealed when there is a key), firing every timer the core arms."""
    peer = Keyring([key], "jarvis") if key else None
    timers: list[tuple[float, tuple[int, str, int]]] = []
    now = 0.0
    for data in inputs:
        now += 0.05
        due = sorted(t for t in timers if t[0] <= now)
        timers = [t for t in timers if t[0] > now]
        effects = [proto.handle_timer(token, when) for when, token in due]
        sealed = peer.seal(data) if peer is not None else data
        effects.append(proto.handle_datagram(sealed, ("127.0.0.9", 4000), now))
        for fx in effects:
            timers.extend((when, token) for token, when in fx.timers)
            for _, out in fx.datagrams:
                assert len(out) <= CONFIG.max_datagram
                body = peer.open(out) if peer is not None else out
                assert body is not None, "sealed with a key the peer does not hold"
                codec.decode(body, {})  # a peer can read everything we send
        assert proto.state_of("n0") is MemberState.ALIVE
        assert 0 <= proto.version <= MAX_VERSION


@FUZZ
@given(st.lists(datagrams, min_size=1, max_size=8))
def test_no_datagram_makes_the_core_raise_without_a_key(inputs: list[bytes]) -> None:
    exercise(fresh(None), inputs, None)


@FUZZ
@given(st.lists(datagrams, min_size=1, max_size=8))
def test_no_sealed_datagram_makes_the_core_raise_with_a_key(inputs: list[bytes]) -> None:
    """What a key holder can send: well-formed, extreme, mutated, all correctly sealed."""
    exercise(fresh(KEY), inputs, KEY)


@FUZZ
@given(st.lists(datagrams, min_size=1, max_size=8))
def test_unsealed_datagrams_are_refused_by_a_keyed_node(inputs: list[bytes]) -> None:
    proto = fresh(KEY)
    for i, data in enumerate(inputs):
        fx = proto.handle_datagram(data, ("127.0.0.9", 4000), 0.1 * (i + 1))
        assert fx.datagrams == [] and fx.events == []
    assert proto.stats["drop_auth"] + proto.stats["drop_oversized"] == len(inputs)


def test_a_claim_at_the_last_version_is_refused_not_overflowed() -> None:
    """Only a key holder can forge it: the node cannot outrank it, so it refuses the claim
    (counted) and stays alive; every other claim moves it past."""
    proto = fresh(None)
    name8 = codec.encode_name("n0")
    for ver, moved in [((EPOCH << 32) | MAX_INC, True), (MAX_VERSION, False)]:
        before = proto.version
        gossip = codec.HEADER_GOSSIP + b"\x01" + codec.encode_suspect(name8, ver, name8)
        proto.handle_datagram(gossip, ("127.0.0.9", 4000), 1.0)
        assert (proto.version > before) is moved
    assert proto.epoch == EPOCH + 1 and proto.incarnation == 0
    assert proto.stats["drop_unrefutable"] == 1 and proto.stats["epoch_moves"] == 1
