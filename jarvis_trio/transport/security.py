"""CURVE keys of a node and the ZAP decision that admits only current members.

With a cluster key, the data channel runs ZeroMQ CURVE: every node makes a fresh keypair at
start (:func:`generate_keypair`) and publishes its public key in its membership record, which
SWIM authenticates with the cluster key. A connecting peer proves it holds the secret key of
a published public key during the CURVE handshake; ZeroMQ then asks the ZAP handler (run by
the bridge's I/O thread, see :mod:`.iothread`) whether that key may connect.
:class:`ZapAuthorizer` is that decision, kept free of sockets so it can be tested as a table:
admit a key that belongs to a current member and name the connection after that member (the
ZAP ``User-Id``, which the bridge reports as the sender node of every frame on the connection),
refuse anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import zmq
from zmq.utils import z85

__all__ = [
    "ZAP_ENDPOINT",
    "ZAP_VERSION",
    "KeyPair",
    "ZapAuthorizer",
    "ZapDecision",
    "decode_public_key",
    "generate_keypair",
]

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
_KEY_BYTES = 32
_Z85_KEY_LEN = 40


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE keypair, both halves Z85-encoded (40 ASCII bytes each)."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.decode()!r}, secret=<hidden>)"


def generate_keypair() -> KeyPair:
    """A fresh CURVE keypair. Raises ``RuntimeError`` if libzmq was built without CURVE."""
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq has no CURVE support; a cluster key cannot be used")
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def decode_public_key(key: bytes) -> bytes:
    """Normalise a public key to its 32 raw bytes; accepts raw or Z85 form.

    Raises ``ValueError`` naming the problem for anything else, so that a bad key in a
    membership record is refused where it enters.
    """
    if len(key) == _KEY_BYTES:
        return bytes(key)
    if len(key) == _Z85_KEY_LEN:
        try:
            raw = z85.decode(key)
        except (ValueError, KeyError, TypeError):
            raise ValueError("public key is not valid Z85") from None
        if len(raw) == _KEY_BYTES:
            return bytes(raw)
    raise ValueError(f"public key must be 32 raw or 40 Z85 bytes, got {len(key)} bytes")


@dataclass(frozen=True, slots=True)
class ZapDecision:
    """The reply to one ZAP request: frames to send back and whether it admitted."""

    reply: list[bytes]
    admitted: bool
    user_id: str | None


class ZapAuthorizer:
    """Admits CURVE clients whose public key belongs to a current member.

    The member table maps raw 32-byte public keys to node names; it is replaced whole by
    :meth:`set_members` (the bridge forwards membership changes from Trio to its I/O thread),
    so a key that left the cluster stops being admitted at its next handshake.
    """

    def __init__(self, domain: bytes, members: Mapping[bytes, str] | None = None) -> None:
        self.domain = domain
        self._members: dict[bytes, str] = {}
        if members:
            self.set_members(members)

    def set_members(self, members: Mapping[bytes, str]) -> None:
        """Replace the admitted keys (raw or Z85) -> node names."""
        self._members = {decode_public_key(key): name for key, name in members.items()}

    @property
    def member_names(self) -> frozenset[str]:
        """Names of the nodes currently admitted."""
        return frozenset(self._members.values())

    def decide(self, request: Sequence[bytes]) -> ZapDecision:
        """Answer one ZAP request (RFC 27 frames) with a ZAP reply.

        Only the CURVE mechanism in our domain with a member's key is admitted (200, with the
        member's node name as User-Id). A malformed request is refused with 500 when it still
        carries a request id, and gets no reply frames at all otherwise.
        """
        if len(request) < 6:
            if len(request) >= 2:
                return self._reply(request[1], b"500", b"malformed ZAP request", None)
            return ZapDecision([], admitted=False, user_id=None)
        version, request_id, domain, _address, _identity, mechanism = request[:6]
        credentials = request[6:]
        if version != ZAP_VERSION:
            return self._reply(request_id, b"500", b"unsupported ZAP version", None)
        if mechanism != b"CURVE" or len(credentials) != 1:
            return self._reply(request_id, b"400", b"CURVE required", None)
        if domain != self.domain:
            return self._reply(request_id, b"400", b"unknown domain", None)
        name = self._members.get(bytes(credentials[0]))
        if name is None:
            return self._reply(request_id, b"400", b"not a member", None)
        return self._reply(request_id, b"200", b"OK", name)

    @staticmethod
    def _reply(request_id: bytes, status: bytes, text: bytes, user: str | None) -> ZapDecision:
        frames = [ZAP_VERSION, request_id, status, text, (user or "").encode(), b""]
        return ZapDecision(frames, admitted=status == b"200", user_id=user)
