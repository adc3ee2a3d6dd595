"""Frames packed into ZeroMQ messages: round trips, limits, and hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_trio.transport.iothread import pack_frames, unpack_frames

frame_lists = st.lists(st.binary(max_size=300), max_size=40)


@settings(max_examples=200, deadline=None)
@given(frame_lists, st.integers(min_value=1, max_value=2000))
def test_packing_round_trips_in_order_within_the_limit(frames: list[bytes], limit: int) -> None:
    packed = pack_frames(frames, limit)
    assert sum(count for _, count in packed) == len(frames)
    out: list[bytes] = []
    for message, count in packed:
        got, oversize, malformed = unpack_frames(message, 1 << 20)
        assert (len(got), oversize, malformed) == (count, 0, False)
        assert len(message) <= limit or count == 1  # only a lone big frame exceeds it
        out += got
    assert out == frames


def test_frames_over_the_limit_are_skipped_and_counted() -> None:
    ((message, count),) = pack_frames([b"a", b"x" * 50, b"b"], 1 << 16)
    assert count == 3
    assert unpack_frames(message, 10) == ([b"a", b"b"], 1, False)


def test_truncated_messages_keep_what_came_before() -> None:
    ((message, _),) = pack_frames([b"first", b"second"], 1 << 16)
    assert unpack_frames(message[:-1], 1 << 16) == ([b"first"], 0, True)
    assert unpack_frames(message[:11], 1 << 16) == ([b"first"], 0, True)
    assert unpack_frames(b"", 1 << 16) == ([], 0, False)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(message: bytes) -> None:
    frames, oversize, _malformed = unpack_frames(message, 64)
    assert all(len(f) <= 64 for f in frames)
    assert sum(4 + len(f) for f in frames) <= len(message)
    assert oversize >= 0
