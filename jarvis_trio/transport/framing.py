"""Frames packed into ZeroMQ messages: length-prefixed, several per message.

Fewer, larger ZeroMQ messages mean fewer pyzmq calls -- each one a point where a thread
gives up the GIL -- and fewer wake-ups downstream: the frames a scheduling batch queued for
one peer leave in one message (:mod:`.outlets`), and the receiving I/O thread splits them
again (:mod:`.iothread`).
"""

from __future__ import annotations

import struct

__all__ = ["LENGTH", "Packed", "pack_frames", "unpack_frames"]

Packed = tuple[bytes, int]  # one ZeroMQ message and how many frames it carries
LENGTH = struct.Struct("!I")


def pack_frames(frames: list[bytes], limit: int) -> list[Packed]:
    """Length-prefix ``frames`` into messages of at most ``limit`` bytes (a frame larger
    than that travels alone)."""
    prefix = LENGTH.pack
    if len(frames) == 1:  # the sequential case: no list of parts to build
        frame = frames[0]
        return [(prefix(len(frame)) + frame, 1)]
    packed: list[Packed] = []
    parts: list[bytes] = []
    size = 0
    for frame in frames:
        need = 4 + len(frame)
        if parts and size + need > limit:
            packed.append((b"".join(parts), len(parts) // 2))
            parts, size = [], 0
        parts.append(prefix(len(frame)))
        parts.append(frame)
        size += need
    if parts:
        packed.append((b"".join(parts), len(parts) // 2))
    return packed


def unpack_frames(message: bytes, limit: int) -> tuple[list[bytes], int, bool]:
    """``(frames, oversize, malformed)`` of a packed message: frames over ``limit`` are
    skipped and counted; a truncated length or frame ends the message (``malformed``)."""
    frames: list[bytes] = []
    oversize = 0
    offset = 0
    total = len(message)
    unpack = LENGTH.unpack_from
    while offset < total:
        if offset + 4 > total:
            return frames, oversize, True
        (size,) = unpack(message, offset)
        offset += 4
        if offset + size > total:
            return frames, oversize, True
        if size > limit:
            oversize += 1
        else:
            frames.append(message[offset : offset + size])
        offset += size
    return frames, oversize, False
