"""The data-channel envelope: what one frame between two nodes carries (frames travel
length-prefixed, several per ZeroMQ message; see :mod:`.iothread`).

Layout: one version byte, then the envelope as a JSON array (msgspec, ``array_like`` so that
field names are not repeated in every frame). JSON rather than msgpack is a measured choice
(``benchmarks/bench_transport.py``, codec rows, every candidate doing the whole job, unsafe
input refused): payloads must be JSON-compatible, and a JSON decoder is itself the proof that
they are, whereas msgpack lets a peer slip in bytes, ext types or integer keys that a local
delivery refuses. All-msgpack therefore needs a validation walk after decoding and comes out
about 2x slower; a msgpack header with JSON-encoded payload fields is as fast as ours (the
order flips between runs) and 5 % smaller, for two formats instead of one; the standard
library's json is 5-6x slower. The ~30 % more bytes than all-msgpack do not matter on
loopback or a LAN at these sizes.

The sender *node* is never a field of the envelope: it is the authenticated peer the bridge
reports with each frame. ``sender`` here is the agent id on that node.

Decoding untrusted bytes raises nothing but :class:`~jarvis_trio.errors.FrameError`.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from ..errors import FrameError, PayloadError, PayloadTooLarge

__all__ = [
    "WIRE_VERSION",
    "Envelope",
    "Kind",
    "decode_frame",
    "encode_envelope",
]

WIRE_VERSION = 1
_PREFIX = bytes([WIRE_VERSION])


class Kind(enum.IntEnum):
    """What an envelope is. Values are the wire encoding."""

    NOTIFY = 1  # fire and forget, to one agent
    REQUEST = 2  # expects a REPLY carrying the same correlation id
    REPLY = 3  # answer to a REQUEST, routed by the request's return path
    DIRECTORY_GET = 4  # node level: "send me your agent directory"
    DIRECTORY = 5  # node level: the agent directory, answering DIRECTORY_GET


class Envelope(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One message between nodes.

    ``target`` and ``sender`` are agent ids (empty for node-level kinds); ``correlation_id``
    is a request's id, repeated by the REPLY (or DIRECTORY) that answers it; ``context`` is
    the caller's metadata (a JSON object or ``None``); ``data`` the JSON payload;
    ``traceparent`` the W3C trace context of the sending span, ``null`` unless tracing is on
    (a trailing field with a default: a frame of the seven earlier fields still decodes).
    """

    kind: Kind
    target: str
    sender: str
    correlation_id: str | None
    timestamp: float
    context: dict[str, Any] | None
    data: Any
    traceparent: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def encode_envelope(envelope: Envelope, limit: int) -> bytes:
    """Encode ``envelope`` into one frame.

    Raises :class:`PayloadTooLarge` when the frame would exceed ``limit`` bytes (nothing is
    sent), :class:`PayloadError` when ``data`` or ``context`` cannot be written as JSON. The
    runtime validates payloads (naming the offending path) before they get here; this is the
    last line, so that nothing unencodable ever reaches a socket.
    """
    try:
        body = _encoder.encode(envelope)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError("$", envelope.data, str(exc)) from None
    size = len(body) + 1
    if size > limit:
        raise PayloadTooLarge(size, limit)
    return _PREFIX + body


def decode_frame(frame: bytes, limit: int) -> Envelope:
    """Decode one received frame, or raise :class:`FrameError` saying what is wrong with it.

    Nothing else escapes: random bytes, truncations and bit flips all end here as a
    ``FrameError`` (property-tested), so the receiving loop can count and drop.
    """
    size = len(frame)
    if size > limit:
        raise FrameError(f"frame of {size} bytes exceeds the limit of {limit} bytes")
    if size == 0:
        raise FrameError("empty frame")
    if frame[0] != WIRE_VERSION:
        raise FrameError(f"unknown wire version {frame[0]} (expected {WIRE_VERSION})")
    try:
        return _decoder.decode(memoryview(frame)[1:])
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise FrameError(f"malformed frame: {exc}") from None
