"""Checking and encoding mailbox payloads.

A mailbox message must survive a trip through Redis unchanged, so the in-process mailbox
applies the same rules as the Redis one — and as every peer-to-peer send: the payload is a
JSON object checked by :func:`jarvis_trio.payload.checked_copy`, and its encoded form
fits in ``max_message_size``. Payloads are stored encoded and decoded again on delivery, so a
reader never shares mutable state with the sender.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import PayloadError, PayloadTooLarge
from ..payload import checked_copy

__all__ = ["decode_payload", "encode_payload"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode_payload(message: object, limit: int) -> bytes:
    """Check ``message`` (a JSON object) and encode it; refuse it over ``limit`` bytes.

    The check is the one every peer-to-peer send uses (:mod:`jarvis_trio.payload`), so
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
