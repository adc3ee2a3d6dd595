"""The SWIM wire format: hand-packed, versioned, optionally authenticated.

Every datagram starts with ``version:u8 type:u8``. Integers are big-endian. A *name* is
``len:u8`` + UTF-8; an *address* is ``family:u8`` (4 or 6) + 4 or 16 address bytes +
``port:u16``. Types and their fixed part:

=========  ====  ===========================================  ==========================
type       code  fixed part                                   then
=========  ====  ===========================================  ==========================
PING       1     ``seq:u32 target:name``                      piggyback
ACK        2     ``seq:u32``                                  piggyback
PING_REQ   3     ``seq:u32 target:address target:name``       piggyback
NACK       4     ``seq:u32``                                  piggyback
GOSSIP     5     (none)                                       piggyback
PUSHPULL   6     ``flags:u8 sender:name count:u16``            full records
=========  ====  ===========================================  ==========================

*Piggyback* is ``count:u8`` followed by that many updates::

    ALIVE   1  name ver meta
    SUSPECT 2  name ver accuser:name
    DEAD    3  name ver accuser:name
    LEFT    4  name ver
    FULL    5  state:u8 name ver meta            (push/pull only)
    ver     =  epoch:u64 inc:u32
    meta    =  address data_port:u16 directory_version:u64 key_len:u8 key

``ver`` orders the records of one member: the *epoch* names the node's life (a new one at
every start, see :func:`~jarvis_trio.swim.members.boot_epoch`), the *incarnation* counts its
refutations within that life. The protocol handles the pair as one 96-bit integer
(``epoch << 32 | inc``, :func:`version`), so a record of a later life always wins and an
incarnation at its maximum rolls over into the next epoch instead of overflowing.

So a steady-state ping (no updates) is ``8 + len(target name)`` bytes and an ack 7 bytes.
With a cluster key, a 16-byte truncated HMAC-SHA256 is appended (see
:mod:`~jarvis_trio.swim.keyring`); a datagram whose tag is missing or wrong is refused.

Every numeric field is range-checked here, where the datagram enters: epochs above
:data:`MAX_EPOCH`, port 0, unspecified addresses, unknown flag bits and states are refused,
so the protocol only ever sees values it can act on. Decoding never raises anything but
:class:`DecodeError`, whose ``reason`` names the counter the driver increments
(``truncated``, ``version``, ``type``, ``malformed``, ``range``, ``oversized``, ``auth``).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from .keyring import TAG_SIZE
from .members import MAX_EPOCH, MAX_VERSION, MemberState, NodeMeta

__all__ = [
    "ACK",
    "ALIVE",
    "DEAD",
    "FULL",
    "GOSSIP",
    "LEFT",
    "MAX_EPOCH",
    "MAX_VERSION",
    "NACK",
    "PING",
    "PING_REQ",
    "PUSHPULL",
    "SUSPECT",
    "TAG_SIZE",
    "VERSION",
    "VER_SIZE",
    "DecodeError",
    "Packet",
    "Update",
    "decode",
    "decode_meta",
    "encode_address",
    "encode_alive",
    "encode_dead",
    "encode_full",
    "encode_left",
    "encode_meta",
    "encode_name",
    "encode_suspect",
    "encode_ver",
    "header_ping",
    "header_ping_req",
    "header_pushpull",
    "header_seq",
    "read_ver",
]

VERSION = 2  # 2: records carry the epoch
PING, ACK, PING_REQ, NACK, GOSSIP, PUSHPULL = 1, 2, 3, 4, 5, 6
ALIVE, SUSPECT, DEAD, LEFT, FULL = 1, 2, 3, 4, 5
FLAG_REPLY = 1
FLAG_FIRST = 2
_FLAGS = FLAG_REPLY | FLAG_FIRST
VER_SIZE = 12  # epoch:u64 inc:u32

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32_FROM = _U32.unpack_from
_HEAD = struct.Struct(">BB")
_HEAD_SEQ = struct.Struct(">BBI")
_META_TAIL = struct.Struct(">HQB")
# Entries in the meta decode cache; cleared when full. Each costs a few hundred bytes, and a
# flood of forged records fills it: 1,024 keeps it near 0.5 MB per node.
_DECODED_META_LIMIT = 1024

# A piggybacked update as decoded: (kind, name, version, meta or None, accuser or "").
Update = tuple[int, str, int, NodeMeta | None, str]


class DecodeError(ValueError):
    """A datagram that cannot be accepted; ``reason`` is the drop counter's name."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(slots=True)
class Packet:
    """A decoded datagram. Fields a type does not use keep their defaults."""

    type: int
    seq: int = 0
    target: str = ""
    target_addr: tuple[str, int] | None = None
    flags: int = 0
    updates: list[Update] | None = None
    count: int = 0  # PUSHPULL only: how many FULL records follow
    offset: int = 0  # PUSHPULL only: where the first record starts in ``raw``
    raw: bytes = b""  # PUSHPULL only: the datagram; the protocol scans its records lazily


def encode_name(name: str) -> bytes:
    """``len:u8`` + UTF-8; names longer than 255 bytes are refused."""
    raw = name.encode()
    if len(raw) > 255 or not raw:
        raise ValueError(f"node name must be 1..255 UTF-8 bytes: {name!r}")
    return _U8.pack(len(raw)) + raw


def encode_address(host: str, port: int) -> bytes:
    """Family byte, packed address, port."""
    if ":" in host:
        return b"\x06" + socket.inet_pton(socket.AF_INET6, host) + _U16.pack(port)
    return b"\x04" + socket.inet_pton(socket.AF_INET, host) + _U16.pack(port)


def encode_meta(meta: NodeMeta) -> bytes:
    """The ``meta`` block of alive and full records."""
    return (
        encode_address(meta.host, meta.port)
        + _META_TAIL.pack(meta.data_port, meta.directory_version, len(meta.public_key))
        + meta.public_key
    )


def encode_ver(ver: int) -> bytes:
    """``epoch:u64 inc:u32`` of a record version (``ValueError`` outside 0..MAX_VERSION)."""
    if not 0 <= ver <= MAX_VERSION:
        raise ValueError(f"record version out of range: {ver}")
    return ver.to_bytes(VER_SIZE, "big")


def encode_alive(name8: bytes, ver: int, meta8: bytes) -> bytes:
    """An ALIVE update from pre-encoded name and meta."""
    return b"\x01" + name8 + encode_ver(ver) + meta8


def encode_suspect(name8: bytes, ver: int, accuser8: bytes) -> bytes:
    """A SUSPECT update."""
    return b"\x02" + name8 + encode_ver(ver) + accuser8


def encode_dead(name8: bytes, ver: int, accuser8: bytes) -> bytes:
    """A DEAD update."""
    return b"\x03" + name8 + encode_ver(ver) + accuser8


def encode_left(name8: bytes, ver: int) -> bytes:
    """A LEFT update: the member said goodbye."""
    return b"\x04" + name8 + encode_ver(ver)


def encode_full(state: MemberState, name8: bytes, ver: int, meta8: bytes) -> bytes:
    """A FULL record of a push/pull exchange."""
    return b"\x05" + _U8.pack(state) + name8 + encode_ver(ver) + meta8


def read_ver(data: bytes, pos: int) -> int:
    """The record version at ``data[pos:pos + 12]`` (the caller checked the bounds);
    :class:`DecodeError` ``range`` for an epoch above :data:`MAX_EPOCH`."""
    ver = int.from_bytes(data[pos : pos + VER_SIZE], "big")
    if ver > MAX_VERSION:
        raise DecodeError("range")
    return ver


def header_ping(seq: int, target8: bytes) -> bytes:
    """Fixed part of a PING."""
    return _HEAD_SEQ.pack(VERSION, PING, seq) + target8


def header_seq(kind: int, seq: int) -> bytes:
    """Fixed part of an ACK or NACK."""
    return _HEAD_SEQ.pack(VERSION, kind, seq)


def header_ping_req(seq: int, addr8: bytes, target8: bytes) -> bytes:
    """Fixed part of a PING_REQ."""
    return _HEAD_SEQ.pack(VERSION, PING_REQ, seq) + addr8 + target8


HEADER_GOSSIP = _HEAD.pack(VERSION, GOSSIP)


def header_pushpull(flags: int, sender8: bytes, count: int) -> bytes:
    """Fixed part of a PUSHPULL chunk with ``count`` records; flags 1 = reply, 2 = first."""
    return _HEAD.pack(VERSION, PUSHPULL) + _U8.pack(flags) + sender8 + _U16.pack(count)


class _Reader:
    """Cursor over a datagram; every read checks bounds and raises ``truncated``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise DecodeError("truncated")
        self.pos = pos + 1
        return self.data[pos]

    def take(self, size: int) -> bytes:
        pos = self.pos
        end = pos + size
        if end > len(self.data):
            raise DecodeError("truncated")
        self.pos = end
        return self.data[pos:end]

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > len(self.data):
            raise DecodeError("truncated")
        self.pos = pos + 4
        value: int = _U32_FROM(self.data, pos)[0]
        return value

    def ver(self) -> int:
        pos = self.pos
        if pos + VER_SIZE > len(self.data):
            raise DecodeError("truncated")
        self.pos = pos + VER_SIZE
        return read_ver(self.data, pos)

    def name(self) -> str:
        data = self.data
        pos = self.pos
        if pos >= len(data):
            raise DecodeError("truncated")
        end = pos + 1 + data[pos]
        if end > len(data):
            raise DecodeError("truncated")
        if end == pos + 1:
            raise DecodeError("malformed")
        self.pos = end
        try:
            return data[pos + 1 : end].decode()
        except UnicodeDecodeError:
            raise DecodeError("malformed") from None

    def address(self) -> tuple[str, int]:
        family = self.u8()
        if family == 4:
            host = socket.inet_ntop(socket.AF_INET, self.take(4))
        elif family == 6:
            host = socket.inet_ntop(socket.AF_INET6, self.take(16))
        else:
            raise DecodeError("malformed")
        port: int = _U16.unpack(self.take(2))[0]
        if port == 0 or ipaddress.ip_address(host).is_unspecified:
            raise DecodeError("range")  # nothing can be sent there: refuse it at the door
        return host, port

    def meta(self, cache: dict[bytes, NodeMeta]) -> NodeMeta:
        data = self.data
        start = self.pos
        if start >= len(data):
            raise DecodeError("truncated")
        family = data[start]
        if family == 4:
            key_at = start + 17  # family, 4 address bytes, port, data port, version
        elif family == 6:
            key_at = start + 29
        else:
            raise DecodeError("malformed")
        if key_at >= len(data):
            raise DecodeError("truncated")
        end = key_at + 1 + data[key_at]
        if end > len(data):
            raise DecodeError("truncated")
        raw = data[start:end]
        self.pos = end
        meta = cache.get(raw)
        if meta is None:
            self.pos = start
            host, port = self.address()
            data_port, version, key_len = _META_TAIL.unpack(self.take(_META_TAIL.size))
            meta = NodeMeta(host, port, data_port, self.take(key_len), version)
            if len(cache) >= _DECODED_META_LIMIT:
                cache.clear()
            cache[raw] = meta
        return meta


def decode_meta(data: bytes, start: int, end: int, cache: dict[bytes, NodeMeta]) -> NodeMeta:
    """Decode the meta block ``data[start:end]`` of a push/pull record."""
    reader = _Reader(data, start)
    meta = reader.meta(cache)
    if reader.pos != end:
        raise DecodeError("malformed")
    return meta


def _updates(reader: _Reader, count: int, cache: dict[bytes, NodeMeta]) -> list[Update]:
    updates: list[Update] = []
    for _ in range(count):
        kind = reader.u8()
        if not ALIVE <= kind <= LEFT:
            raise DecodeError("malformed")
        name = reader.name()
        ver = reader.ver()
        if kind == ALIVE:
            updates.append((kind, name, ver, reader.meta(cache), ""))
        elif kind == LEFT:
            updates.append((kind, name, ver, None, ""))
        else:
            updates.append((kind, name, ver, None, reader.name()))
    return updates


def decode(data: bytes, cache: dict[bytes, NodeMeta]) -> Packet:
    """Parse one (already authenticated) datagram; raises only :class:`DecodeError`.

    ``cache`` maps raw meta blocks to their decoded :class:`NodeMeta`; it spares re-validating
    the same member's metadata on every push/pull and is bounded (cleared at 1,024 entries).
    """
    if len(data) < 2:
        raise DecodeError("truncated")
    if data[0] != VERSION:
        raise DecodeError("version")
    try:
        return _decode_body(data, cache)
    except DecodeError:
        raise
    except (ValueError, struct.error, OSError):
        raise DecodeError("malformed") from None


def _decode_body(data: bytes, cache: dict[bytes, NodeMeta]) -> Packet:
    kind = data[1]
    reader = _Reader(data, 2)
    if kind == PING:
        packet = Packet(kind, reader.u32(), reader.name())
    elif kind in (ACK, NACK):
        packet = Packet(kind, reader.u32())
    elif kind == PING_REQ:
        seq = reader.u32()
        addr = reader.address()
        packet = Packet(kind, seq, reader.name(), addr)
    elif kind == GOSSIP:
        packet = Packet(kind)
    elif kind == PUSHPULL:
        flags = reader.u8()
        if flags & ~_FLAGS:
            raise DecodeError("range")
        sender = reader.name()
        count = _U16.unpack(reader.take(2))[0]
        # Records are validated as the protocol walks them: most carry no news, and skipping
        # them without decoding is what keeps anti-entropy cheap at 1,000+ members.
        return Packet(kind, target=sender, flags=flags, count=count, offset=reader.pos, raw=data)
    else:
        raise DecodeError("type")
    if kind != PUSHPULL:
        packet.updates = _updates(reader, reader.u8(), cache) if reader.pos < len(data) else []
    if reader.pos != len(data):
        raise DecodeError("malformed")
    return packet
