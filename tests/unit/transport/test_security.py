"""The ZAP decision, as a table: only CURVE, our domain, a current member's key."""

from __future__ import annotations

import pytest
from zmq.utils import z85

from jarvis_trio.transport.security import (
    ZAP_VERSION,
    ZapAuthorizer,
    decode_public_key,
    generate_keypair,
)


def request(
    key: bytes,
    *,
    mechanism: bytes = b"CURVE",
    domain: bytes = b"jarvis",
    version: bytes = ZAP_VERSION,
) -> list[bytes]:
    return [version, b"7", domain, b"127.0.0.1", b"", mechanism, key]


def test_keypair_is_z85_and_hides_its_secret() -> None:
    pair = generate_keypair()
    assert len(pair.public) == 40 and len(pair.secret) == 40
    assert len(decode_public_key(pair.public)) == 32
    assert pair.secret.decode() not in repr(pair)


def test_decode_public_key_accepts_raw_and_z85_and_names_bad_lengths() -> None:
    raw = bytes(range(32))
    assert decode_public_key(raw) == raw
    assert decode_public_key(z85.encode(raw)) == raw
    with pytest.raises(ValueError, match="32 raw or 40 Z85 bytes, got 5"):
        decode_public_key(b"short")
    with pytest.raises(ValueError, match="Z85"):
        decode_public_key(b"~" * 40)


def test_member_key_is_admitted_under_its_node_name() -> None:
    pair = generate_keypair()
    auth = ZapAuthorizer(b"jarvis", {pair.public: "node-a"})
    decision = auth.decide(request(decode_public_key(pair.public)))
    assert decision.admitted and decision.user_id == "node-a"
    assert decision.reply == [ZAP_VERSION, b"7", b"200", b"OK", b"node-a", b""]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"mechanism": b"NULL"}, b"400"),
        ({"mechanism": b"PLAIN"}, b"400"),
        ({"domain": b"other"}, b"400"),
        ({"version": b"2.0"}, b"500"),
    ],
)
def test_anything_but_curve_in_our_domain_is_refused(
    changes: dict[str, bytes], status: bytes
) -> None:
    pair = generate_keypair()
    auth = ZapAuthorizer(b"jarvis", {pair.public: "node-a"})
    decision = auth.decide(request(decode_public_key(pair.public), **changes))
    assert not decision.admitted
    assert decision.reply[1] == b"7" and decision.reply[2] == status
    assert decision.reply[4] == b""


def test_unknown_key_is_refused_and_member_changes_take_effect() -> None:
    a, b = generate_keypair(), generate_keypair()
    auth = ZapAuthorizer(b"jarvis", {a.public: "node-a"})
    assert not auth.decide(request(decode_public_key(b.public))).admitted
    auth.set_members({b.public: "node-b"})
    assert auth.decide(request(decode_public_key(b.public))).user_id == "node-b"
    assert not auth.decide(request(decode_public_key(a.public))).admitted
    assert auth.member_names == frozenset({"node-b"})


def test_malformed_requests_get_a_500_or_nothing() -> None:
    auth = ZapAuthorizer(b"jarvis")
    short = auth.decide([ZAP_VERSION, b"9", b"jarvis"])
    assert short.reply[1:3] == [b"9", b"500"] and not short.admitted
    empty = auth.decide([])
    assert empty.reply == [] and not empty.admitted


def test_a_bad_member_key_is_refused_where_it_enters() -> None:
    auth = ZapAuthorizer(b"jarvis")
    with pytest.raises(ValueError, match="public key"):
        auth.set_members({b"not-a-key": "node-x"})
