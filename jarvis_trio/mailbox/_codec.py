"""Checking and encoding mailbox payloads.

A mailbox message must survive a trip through Redis unchanged, so the in-process mailbox
applies the same rules as the Redis one — and as every peer-to-peer send: the payload is a
JSON object checked by :func:`jarvis_trio.peers.payload.checked_copy`, and its encoded form
fits in ``max_message_size``. Payloads are stored encoded and decoded again on delivery, so a
reader never shares mutable state with the sender.

:func:`check_json` applies the same rules to a value of any JSON type (the Redis store's
values): it walks the value once without building paths; only when it fails is the path of
the offending value (``$.items[2].when``) assembled while the error unwinds.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from ..errors import PayloadError, PayloadTooLarge
from ..peers.payload import MAX_DEPTH, checked_copy

__all__ = ["check_json", "decode_payload", "encode_payload"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class _Bad(Exception):
    """Internal: a value failed the check; ``parts`` collects the path from the inside out."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.parts: list[str] = []


_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def _walk(value: object, depth: int = 0) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise _Bad(value, "integer outside the 64-bit range")
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _Bad(value, "NaN and infinity have no JSON form")
        return
    if depth >= MAX_DEPTH:
        raise _Bad(value, f"nested deeper than {MAX_DEPTH} levels (or a reference cycle)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                error = _Bad(key, f"object key {key!r} is a {type(key).__name__}, not a string")
                error.parts.append(f"[{key!r}]")
                raise error
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue  # the common case, without a call
            try:
                _walk(item, depth + 1)
            except _Bad as error:
                error.parts.append(f".{key}" if key.isidentifier() else f"[{key!r}]")
                raise
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            try:
                _walk(item, depth + 1)
            except _Bad as error:
                error.parts.append(f"[{index}]")
                raise
        return
    if isinstance(value, str):  # subclasses such as StrEnum
        return
    if isinstance(value, int | float):  # IntEnum, float subclasses: checked as the base type
        _walk(int(value) if isinstance(value, int) else float(value), depth)
        return
    raise _Bad(value, f"a {type(value).__name__} has no JSON form")


def check_json(value: object, root: str = "$") -> None:
    """Raise :class:`PayloadError` naming the path of the first value with no JSON form."""
    try:
        _walk(value)
    except _Bad as error:
        path = root + "".join(reversed(error.parts))
        raise PayloadError(path, error.value, error.reason) from None


def encode_payload(message: object, limit: int) -> bytes:
    """Check ``message`` (a JSON object) and encode it; refuse it over ``limit`` bytes.

    The check is the one every peer-to-peer send uses (:mod:`jarvis_trio.peers.payload`), so
    the mailbox refuses exactly what the other routes refuse.
    """
    data = _encoder.encode(checked_copy(message, what="mailbox message"))
    if len(data) > limit:
        raise PayloadTooLarge(len(data), limit)
    return data


def decode_payload(data: bytes) -> dict[str, Any]:
    """Decode a payload written by :func:`encode_payload`."""
    value = _decoder.decode(data)
    if not isinstance(value, dict):
        raise PayloadError("$", value, "a stored mailbox payload is not a JSON object")
    return value
