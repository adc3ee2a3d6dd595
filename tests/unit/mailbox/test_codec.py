"""The payload check names the path of the offending value; encoding enforces the limit."""

from __future__ import annotations

import datetime
import math

import pytest

from jarvis_trio.errors import PayloadError, PayloadTooLarge
from jarvis_trio.mailbox._codec import decode_payload, encode_payload
from jarvis_trio.payload import check_json


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": {1, 2}}, "$.a"),
        ({"items": [1, 2, datetime.date(2024, 1, 1)]}, "$.items[2]"),
        ({"x": {"y": [{"z": b"raw"}]}}, "$.x.y[0].z"),
        ({"bad key": [math.nan]}, "$['bad key'][0]"),
        ({"n": math.inf}, "$.n"),
        ({"d": {3: "int key"}}, "$.d[3]"),
        ({"o": object()}, "$.o"),
    ],
)
def test_check_json_names_the_path(value: object, path: str) -> None:
    with pytest.raises(PayloadError) as caught:
        check_json(value)
    assert caught.value.path == path
    assert path in str(caught.value)
    assert isinstance(caught.value, TypeError)


def test_json_values_pass_and_round_trip() -> None:
    message = {"s": "x", "i": 3, "f": 1.5, "b": True, "n": None, "l": [1, [2, {"k": "v"}]]}
    check_json(message)
    assert decode_payload(encode_payload(message, 1000)) == message


def test_tuples_are_encoded_as_lists() -> None:
    assert decode_payload(encode_payload({"t": (1, 2)}, 100)) == {"t": [1, 2]}


def test_a_message_must_be_an_object() -> None:
    with pytest.raises(PayloadError, match="mailbox message must be a dict, not list"):
        encode_payload([1, 2], 100)


def test_message_and_value_checks_agree_on_the_edges() -> None:
    too_big = {"n": 1 << 64}
    with pytest.raises(PayloadError, match="64-bit"):
        encode_payload(too_big, 100)
    with pytest.raises(PayloadError, match="64-bit"):
        check_json(too_big)
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(PayloadError, match="nested deeper"):
        encode_payload(deep, 10_000)
    with pytest.raises(PayloadError, match="nested deeper"):
        check_json(deep)


def test_size_limit_counts_encoded_bytes() -> None:
    encode_payload({"x": "a" * 10}, 18)  # {"x":"aaaaaaaaaa"} is 18 bytes
    with pytest.raises(PayloadTooLarge) as caught:
        encode_payload({"x": "a" * 11}, 18)
    assert (caught.value.size, caught.value.limit) == (19, 18)
