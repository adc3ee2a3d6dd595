"""The least a message between two nodes must cost in Python, written from scratch.

What any implementation of the documented API pays per cross-node message, at the least:

* on the sending side, refuse a payload JSON cannot carry (the contract: a local send refuses
  exactly what a remote one would; msgspec alone would write a ``datetime`` or a NaN), then
  serialise the payload with the envelope's fields (kind, sender, target, message id);
* on the receiving side, parse the frame refusing malformed input, check the field types and
  the payload's shape (a dict, nesting bounded) and hand over one object per message.

Each :class:`Codec` does that whole job with a different format or batching; the benchmark
keeps the cheapest. The runtime's own envelope carries more (a timestamp, a context, a trace
field); none of that is here, so these figures are a floor for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

__all__ = [
    "CODECS",
    "NOTIFY",
    "REPLY",
    "REQUEST",
    "Codec",
    "Message",
    "check_payload",
    "inbound_ok",
    "packed_codec",
    "request_codec",
]

NOTIFY, REQUEST, REPLY = 1, 2, 3

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1
_DEPTH = 64


_Finite = Annotated[float, msgspec.Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
_Int64 = Annotated[int, msgspec.Meta(ge=_INT_MIN, le=(1 << 63) - 1)]
Scalar = _Int64 | _Finite | str | bool | None
"""A JSON scalar as msgspec checks it in C (NaN and the infinities fail the bounds). What
fails it is not refused yet: it takes the Python path, which decides (so an integer between
2**63 and 2**64, which msgspec cannot bound, is still accepted, one beyond refused)."""


class _FlatOne(msgspec.Struct, array_like=True, gc=False):
    """A box for one flat payload: msgspec caches a Struct's type information, not that of
    a ``dict[...]`` alias (converting to the alias rebuilds it at every call, ~2 µs)."""

    data: dict[str, Scalar]


class _FlatMany(msgspec.Struct, array_like=True, gc=False):
    data: list[dict[str, Scalar]]


class Message(msgspec.Struct, array_like=True, gc=False):
    """A decoded message: what the receiving side hands over."""

    kind: int
    sender: str
    target: str
    id: int
    data: dict[str, Any]


def _value_ok(value: Any, depth: int) -> bool:
    kind = type(value)
    if kind is str:
        return value.isascii() or _utf8(value)
    if kind is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= _DEPTH:
        return False
    if kind is dict:
        return all(type(k) is str and _value_ok(v, depth + 1) for k, v in value.items())
    if kind is list:
        return all(_value_ok(v, depth + 1) for v in value)
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_payload(payload: dict[str, Any]) -> bool:
    """Whether ``payload`` has a JSON form (keys ``str``, finite numbers, 64-bit integers,
    no lone surrogates, bounded nesting): what the sending side must refuse."""
    for key, value in payload.items():
        kind = type(value)
        if type(key) is not str:
            return False
        if kind is int:
            if not _INT_MIN <= value <= _INT_MAX:
                return False
        elif not (kind is str and value.isascii()) and not _value_ok(value, 1):
            return False
    return True


def inbound_ok(data: dict[str, Any]) -> bool:
    """What the receiving side of a JSON frame must still check: bounded nesting."""
    for value in data.values():
        kind = type(value)
        if (kind is dict or kind is list) and not _value_ok(value, 1):
            return False
    return True


def _inbound_msgpack_ok(data: dict[str, Any]) -> bool:
    """A msgpack frame can carry bytes, extension types and huge ints: every value is
    checked, not only containers."""
    for value in data.values():
        kind = type(value)
        if kind is int:
            if not _INT_MIN <= value <= _INT_MAX:
                return False
        elif not (kind is str and value.isascii()) and not _value_ok(value, 1):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Codec:
    """One way to do the whole job: ``encode(messages) -> frames`` on the sending side and
    ``decode(frames) -> messages`` on the receiving side. ``batch`` is how many messages
    travel in one frame (1: one frame per message)."""

    name: str
    batch: int
    encode: Callable[[list[tuple[int, str, str, int, dict[str, Any]]]], list[bytes]]
    decode: Callable[[list[bytes]], list[Message]]


def _one_frame_each(
    encode_one: Callable[[Any], bytes],
) -> Callable[[list[tuple[int, str, str, int, dict[str, Any]]]], list[bytes]]:
    """The sending side of a codec with one frame per message: each payload checked, then
    the message encoded on its own."""

    def encode(messages: list[tuple[int, str, str, int, dict[str, Any]]]) -> list[bytes]:
        out = []
        for message in messages:
            if not check_payload(message[4]):
                raise ValueError("payload has no JSON form")
            out.append(encode_one(message))
        return out

    return encode


def _json_single() -> Codec:
    encode_one = msgspec.json.Encoder().encode
    decode_one = msgspec.json.Decoder(Message).decode

    encode = _one_frame_each(encode_one)

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            message = decode_one(frame)
            if not inbound_ok(message.data):
                raise ValueError("payload nested too deeply")
            out.append(message)
        return out

    return Codec("msgspec JSON, typed, one frame per message", 1, encode, decode)


def _json_untyped() -> Codec:
    encode_one = msgspec.json.Encoder().encode
    decode_one = msgspec.json.Decoder().decode

    encode = _one_frame_each(encode_one)

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            kind, sender, target, ident, data = decode_one(frame)
            if (
                type(kind) is not int
                or type(sender) is not str
                or type(target) is not str
                or type(ident) is not int
                or type(data) is not dict
                or not inbound_ok(data)
            ):
                raise ValueError("malformed message")
            out.append(Message(kind, sender, target, ident, data))
        return out

    return Codec("msgspec JSON, untyped + checks, one frame per message", 1, encode, decode)


def _msgpack_single() -> Codec:
    encode_one = msgspec.msgpack.Encoder().encode
    decode_one = msgspec.msgpack.Decoder(Message).decode

    encode = _one_frame_each(encode_one)

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            message = decode_one(frame)
            if not _inbound_msgpack_ok(message.data):
                raise ValueError("payload has no JSON form")
            out.append(message)
        return out

    return Codec("msgspec msgpack, typed, one frame per message", 1, encode, decode)


def _json_batched(batch: int) -> Codec:
    encode_all = msgspec.json.Encoder().encode
    decode_all = msgspec.json.Decoder(list[Message]).decode

    def encode(messages: list[tuple[int, str, str, int, dict[str, Any]]]) -> list[bytes]:
        for message in messages:
            if not check_payload(message[4]):
                raise ValueError("payload has no JSON form")
        return [encode_all(messages[i : i + batch]) for i in range(0, len(messages), batch)]

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            got = decode_all(frame)
            for message in got:
                if not inbound_ok(message.data):
                    raise ValueError("payload nested too deeply")
            out += got
        return out

    return Codec(f"msgspec JSON, typed, {batch} messages per frame", batch, encode, decode)


def _msgpack_batched(batch: int) -> Codec:
    encode_all = msgspec.msgpack.Encoder().encode
    decode_all = msgspec.msgpack.Decoder(list[Message]).decode

    def encode(messages: list[tuple[int, str, str, int, dict[str, Any]]]) -> list[bytes]:
        for message in messages:
            if not check_payload(message[4]):
                raise ValueError("payload has no JSON form")
        return [encode_all(messages[i : i + batch]) for i in range(0, len(messages), batch)]

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            got = decode_all(frame)
            for message in got:
                if not _inbound_msgpack_ok(message.data):
                    raise ValueError("payload has no JSON form")
            out += got
        return out

    return Codec(f"msgspec msgpack, typed, {batch} messages per frame", batch, encode, decode)


class _Group(msgspec.Struct, array_like=True, gc=False):
    kind: int
    sender: str
    target: str
    first_id: int
    data: list[dict[str, Any]]


def _json_grouped(batch: int) -> Codec:
    """Consecutive messages of one sender to one target, with consecutive ids, share one
    header: the frame carries the fields once and the payloads as a list."""
    encode_all = msgspec.json.Encoder().encode
    decode_all = msgspec.json.Decoder(_Group).decode

    def encode(messages: list[tuple[int, str, str, int, dict[str, Any]]]) -> list[bytes]:
        frames: list[bytes] = []
        kind, sender, target, first, _ = messages[0]
        group: list[dict[str, Any]] = []
        for message in messages:
            data = message[4]
            if not check_payload(data):
                raise ValueError("payload has no JSON form")
            if (
                message[3] != first + len(group)
                or message[2] != target
                or message[1] != sender
                or message[0] != kind
                or len(group) == batch
            ):
                frames.append(encode_all((kind, sender, target, first, group)))
                kind, sender, target, first, _ = message
                group = []
            group.append(data)
        frames.append(encode_all((kind, sender, target, first, group)))
        return frames

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            got = decode_all(frame)
            kind, sender, target, ident = got.kind, got.sender, got.target, got.first_id
            for data in got.data:
                if not inbound_ok(data):
                    raise ValueError("payload nested too deeply")
                out.append(Message(kind, sender, target, ident, data))
                ident += 1
        return out

    return Codec(
        f"msgspec JSON, up to {batch} messages per frame, one header per sender and target",
        batch,
        encode,
        decode,
    )


class _FlatMessage(msgspec.Struct, array_like=True, gc=False):
    kind: int
    sender: str
    target: str
    id: int
    data: dict[str, Scalar]


class _FlatGroup(msgspec.Struct, array_like=True, gc=False):
    kind: int
    sender: str
    target: str
    first_id: int
    data: list[dict[str, Scalar]]


def _flat_checked(payloads: list[dict[str, Any]]) -> None:
    """The sending side's check done by msgspec in C for flat payloads (all values scalars),
    falling back to the Python walk when a payload has a container or a refused value."""
    try:
        msgspec.convert((payloads,), _FlatMany, strict=True)
    except msgspec.ValidationError:
        for payload in payloads:
            if not check_payload(payload):
                raise ValueError("payload has no JSON form") from None


def _json_flat_batched(batch: int) -> Codec:
    """Like the batched codec, with msgspec checking flat payloads in C on both sides; a
    frame with a nested payload takes the general path on the receiving side."""
    encode_all = msgspec.json.Encoder().encode
    decode_flat = msgspec.json.Decoder(list[_FlatMessage]).decode
    decode_any = msgspec.json.Decoder(list[Message]).decode

    def encode(messages: list[tuple[int, str, str, int, dict[str, Any]]]) -> list[bytes]:
        _flat_checked([message[4] for message in messages])
        return [encode_all(messages[i : i + batch]) for i in range(0, len(messages), batch)]

    def decode(frames: list[bytes]) -> list[Message]:
        out: list[Any] = []
        for frame in frames:
            try:
                out += decode_flat(frame)
            except msgspec.ValidationError:
                got = decode_any(frame)
                for message in got:
                    if not inbound_ok(message.data):
                        raise ValueError("payload nested too deeply") from None
                out += got
        return out

    return Codec(
        f"msgspec JSON, {batch} messages per frame, flat payloads checked in C",
        batch,
        encode,
        decode,
    )


def _json_flat_grouped(batch: int) -> Codec:
    """The grouped codec with the flat fast path: the sender hands over payloads of one
    sender and target with consecutive ids, so it builds no per-message tuple at all."""
    encode_all = msgspec.json.Encoder().encode
    decode_flat = msgspec.json.Decoder(_FlatGroup).decode
    decode_any = msgspec.json.Decoder(_Group).decode

    def encode(messages: list[tuple[int, str, str, int, dict[str, Any]]]) -> list[bytes]:
        kind, sender, target, first, _ = messages[0]
        payloads = [message[4] for message in messages]
        _flat_checked(payloads)
        return [
            encode_all((kind, sender, target, first + i, payloads[i : i + batch]))
            for i in range(0, len(payloads), batch)
        ]

    def decode(frames: list[bytes]) -> list[Message]:
        out = []
        for frame in frames:
            got: _FlatGroup | _Group
            try:
                got = decode_flat(frame)
            except msgspec.ValidationError:
                got = decode_any(frame)
                if not all(inbound_ok(data) for data in got.data):
                    raise ValueError("payload nested too deeply") from None
            kind, sender, target, ident = got.kind, got.sender, got.target, got.first_id
            out += [
                Message(kind, sender, target, ident + i, data) for i, data in enumerate(got.data)
            ]
        return out

    return Codec(
        f"msgspec JSON, {batch} messages per frame, one header, flat payloads checked in C",
        batch,
        encode,
        decode,
    )


CODECS: tuple[Callable[[], Codec], ...] = (
    _json_single,
    _json_untyped,
    _msgpack_single,
    lambda: _json_batched(64),
    lambda: _msgpack_batched(64),
    lambda: _json_grouped(64),
    lambda: _json_flat_batched(64),
    lambda: _json_flat_grouped(64),
)
"""Every candidate, built fresh by calling the entry."""


def request_codec() -> tuple[
    Callable[[int, str, str, int, dict[str, Any]], bytes], Callable[[list[bytes]], list[Message]]
]:
    """``(encode, decode)`` for request/reply traffic, one frame per message: ``encode(kind,
    sender, target, id, payload) -> frame`` checks the payload; ``decode(frames)`` checks the
    frames (flat payloads in C, the general path otherwise)."""
    encode_one = msgspec.json.Encoder().encode
    decode_flat = msgspec.json.Decoder(_FlatMessage).decode
    decode_any = msgspec.json.Decoder(Message).decode
    convert = msgspec.convert

    def encode(kind: int, sender: str, target: str, ident: int, payload: dict[str, Any]) -> bytes:
        try:
            convert((payload,), _FlatOne, strict=True)
        except msgspec.ValidationError:
            if not check_payload(payload):
                raise ValueError("payload has no JSON form") from None
        return encode_one((kind, sender, target, ident, payload))

    def decode(frames: list[bytes]) -> list[Message]:
        out: list[Any] = []
        for frame in frames:
            try:
                out.append(decode_flat(frame))
            except msgspec.ValidationError:
                message = decode_any(frame)
                if not inbound_ok(message.data):
                    raise ValueError("payload nested too deeply") from None
                out.append(message)
        return out

    return encode, decode


def packed_codec() -> Codec:
    """Every message handed over at once in one frame (what one scheduling batch queued for
    one peer), flat payloads checked in C on both sides."""
    return _json_flat_batched(1 << 30)
