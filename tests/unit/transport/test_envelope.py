"""The frame codec: round trips, limits, and no exception but FrameError on hostile bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jarvis_trio.errors import FrameError, PayloadError, PayloadTooLarge
from jarvis_trio.transport.envelope import (
    WIRE_VERSION,
    Envelope,
    Kind,
    decode_frame,
    encode_envelope,
)

LIMIT = 1 << 16

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)

envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(list(Kind)),
    target=st.text(max_size=20),
    sender=st.text(max_size=20),
    correlation_id=st.none() | st.text(max_size=20),
    timestamp=st.floats(min_value=0, max_value=4e9),
    context=st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    data=json_values,
)


def sample(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "kind": Kind.REQUEST,
        "target": "analyst-1a2b3c4d",
        "sender": "scout-5e6f7a8b",
        "correlation_id": None,
        "timestamp": 1_700_000_000.25,
        "context": {"mission_id": "abc123"},
        "data": {"need": "clarification", "n": [1, 2.5, None, True]},
    }
    fields.update(changes)
    return Envelope(**fields)


def test_round_trip_keeps_every_field() -> None:
    envelope = sample(correlation_id="req-ffffffffffff", kind=Kind.REPLY)
    frame = encode_envelope(envelope, LIMIT)
    assert frame[0] == WIRE_VERSION
    assert decode_frame(frame, LIMIT) == envelope


def test_oversized_envelope_is_refused_at_the_sender_with_both_sizes() -> None:
    big = sample(data={"blob": "x" * 2000})
    with pytest.raises(PayloadTooLarge) as caught:
        encode_envelope(big, 1000)
    assert caught.value.limit == 1000
    assert caught.value.size > 2000
    assert "exceeds the limit of 1000" in str(caught.value)


def test_frame_of_exactly_the_limit_passes() -> None:
    frame = encode_envelope(sample(), LIMIT)
    assert decode_frame(frame, len(frame)) == sample()
    assert encode_envelope(sample(), len(frame)) == frame


def test_unencodable_payload_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        encode_envelope(sample(data={"when": object()}), LIMIT)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "empty"),
        (bytes([WIRE_VERSION + 1]) + b"[]", "version"),
        (b'\x01[9,"","",null,1.0,null,1]', "enum"),
        (b'\x01[2,"","",null,1.0,[1],1]', "object"),
        (b'\x01[2,"","",null,1.0,null]', "malformed"),
        (b'\x01{"kind":1}', "malformed"),
        (b'\x01[2,"","",null,1.0,null,1] trailing', "malformed"),
    ],
)
def test_malformed_frames_are_frame_errors(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        decode_frame(frame, LIMIT)


def test_oversized_frame_is_refused_before_decoding() -> None:
    frame = encode_envelope(sample(data="y" * 500), LIMIT)
    with pytest.raises(FrameError, match="exceeds the limit"):
        decode_frame(frame, 100)


def test_decoded_payload_holds_only_json_types() -> None:
    frame = b'\x01[1,"t","s",null,0.5,{"k":[1,{"z":null}]},{"a":[1.5,"b",false]}]'
    envelope = decode_frame(frame, LIMIT)
    assert envelope.kind is Kind.NOTIFY
    assert envelope.context == {"k": [1, {"z": None}]}
    assert envelope.data == {"a": [1.5, "b", False]}


@settings(max_examples=100, deadline=None)
@given(envelopes)
def test_any_json_envelope_round_trips(envelope: Envelope) -> None:
    decoded = decode_frame(encode_envelope(envelope, 1 << 20), 1 << 20)
    assert decoded == envelope


def _decode_only_frame_errors(frame: bytes) -> None:
    try:
        envelope = decode_frame(frame, LIMIT)
    except FrameError:
        return
    assert isinstance(envelope, Envelope)
    assert isinstance(envelope.kind, Kind)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_frame_error(frame: bytes) -> None:
    _decode_only_frame_errors(frame)


@settings(max_examples=150, deadline=None)
@given(envelopes, st.data())
def test_truncations_never_raise_anything_but_frame_error(envelope: Envelope, data: Any) -> None:
    frame = encode_envelope(envelope, 1 << 20)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame)))
    _decode_only_frame_errors(frame[:cut])


@settings(max_examples=200, deadline=None)
@given(envelopes, st.data())
def test_bit_flips_never_raise_anything_but_frame_error(envelope: Envelope, data: Any) -> None:
    frame = bytearray(encode_envelope(envelope, 1 << 20))
    flips = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(frame) * 8 - 1), min_size=1, max_size=4)
    )
    for bit in flips:
        frame[bit // 8] ^= 1 << (bit % 8)
    _decode_only_frame_errors(bytes(frame))


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=5000))
def test_deep_nesting_is_a_frame_error_or_decodes(depth: int) -> None:
    frame = b'\x01[1,"t","s",null,0.5,null,' + b"[" * depth + b"]" * depth + b"]"
    _decode_only_frame_errors(frame)


def _depth(value: Any) -> int:
    """Containers nested in ``value``, counting itself."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _nested(levels: int) -> Any:
    value: Any = "[{"  # brackets inside strings count too: the bound only over-counts
    for level in range(levels):
        value = [value] if level % 2 else {"k{": value}
    return value


@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_a_frames_brackets_bound_how_deep_its_payloads_nest(data: Any, context: Any) -> None:
    """The receiving node skips the nesting walk when a frame has at most MAX_DEPTH ``{``
    and ``[`` bytes (``Bridge.receive_sized``): sound only if they never under-count."""
    envelope = Envelope(Kind.NOTIFY, "t", "s", None, 0.0, {"c": context}, data)
    frame = encode_envelope(envelope, LIMIT)
    brackets = frame.count(b"{") + frame.count(b"[")
    assert brackets >= 1 + max(_depth(data), 1 + _depth(context))


@pytest.mark.parametrize("levels", [1, 40, 63, 64, 65, 200])
def test_deep_payloads_always_have_more_brackets_than_max_depth(levels: int) -> None:
    from jarvis_trio.payload import MAX_DEPTH, too_deep

    data = _nested(levels)
    frame = encode_envelope(Envelope(Kind.NOTIFY, "t", "s", None, 0.0, None, data), LIMIT)
    brackets = frame.count(b"{") + frame.count(b"[")
    assert brackets >= 1 + levels
    if too_deep(data):
        assert brackets > MAX_DEPTH
