"""JSON-compatibility checks: what is refused, the path named, and copy semantics."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Any

import pytest

from jarvis_trio.errors import PayloadError
from jarvis_trio.payload import (
    MAX_DEPTH,
    checked_context,
    checked_copy,
    format_path,
    too_deep,
)


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"a": {1, 2}}, "$.a"),
        ({"items": [1, 2, b"x"]}, "$.items[2]"),
        ({"a": {"b": [{"c": object()}]}}, "$.a.b[0].c"),
        ({"odd key": math.nan}, "$['odd key']"),
        ({"x": math.inf}, "$.x"),
        ({"big": 1 << 70}, "$.big"),
        ({"nested": {3: "int key"}}, "$.nested[3]"),
    ],
)
def test_refused_values_name_their_path(payload: dict[str, Any], path: str) -> None:
    with pytest.raises(PayloadError) as info:
        checked_copy(payload)
    assert info.value.path == path
    assert path in str(info.value)
    assert isinstance(info.value, TypeError)


def test_message_must_be_a_dict() -> None:
    with pytest.raises(PayloadError, match="must be a dict, not list"):
        checked_copy([1, 2])


def test_context_none_is_empty_and_context_is_checked() -> None:
    assert checked_context(None) == {}
    with pytest.raises(PayloadError, match="context must be a dict"):
        checked_context("mission")
    with pytest.raises(PayloadError) as info:
        checked_context({"when": object()})
    assert info.value.path == "$.when"


def test_cycles_and_depth_are_refused() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(PayloadError, match="nested deeper"):
        checked_copy(cyclic)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(MAX_DEPTH + 1):
        node["d"] = {}
        node = node["d"]
    with pytest.raises(PayloadError):
        checked_copy(deep)


def test_copy_is_deep_and_json_shaped() -> None:
    inner = [1, 2]
    original = {"list": inner, "tuple": (1, (2, 3)), "n": None, "f": 1.5, "t": True}
    copy = checked_copy(original)
    assert copy == {"list": [1, 2], "tuple": [1, [2, 3]], "n": None, "f": 1.5, "t": True}
    inner.append(3)
    assert copy["list"] == [1, 2]
    assert copy is not original and copy["list"] is not inner


def test_subclasses_become_base_types() -> None:
    copy = checked_copy({"c": Colour.RED, "l": Level.HIGH, "o": OrderedDict(a=1)})
    assert copy == {"c": "red", "l": 3, "o": {"a": 1}}
    assert type(copy["c"]) is str and type(copy["l"]) is int and type(copy["o"]) is dict


def test_boundaries_of_integers() -> None:
    extremes = {"a": -(1 << 63), "b": (1 << 64) - 1}
    assert checked_copy(extremes) == extremes
    with pytest.raises(PayloadError):
        checked_copy({"a": -(1 << 63) - 1})


def test_format_path() -> None:
    assert format_path([]) == "$"
    assert format_path(["a", 0, "b c"]) == "$.a[0]['b c']"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"text": "caf\udce9"}, "$.text"),
        ({"deep": {"list": ["ok", "\ud800"]}}, "$.deep.list[1]"),
        ({"\udc80key": 1}, "$['\\udc80key']"),
    ],
)
def test_a_lone_surrogate_is_a_payload_error_naming_its_path(
    payload: dict[str, Any], path: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        checked_copy(payload)
    assert isinstance(caught.value, TypeError)
    assert caught.value.path == path
    assert "surrogate" in str(caught.value)
    assert checked_copy({"é": "ü✓"}) == {"é": "ü✓"}  # non-ASCII text is fine


def test_too_deep_agrees_with_the_local_limit() -> None:
    for levels in (1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 500):
        flat: dict[str, Any] = {}
        for _ in range(levels - 1):
            flat = {"a": [flat]} if levels % 2 else {"a": flat}
        refused_locally = False
        try:
            checked_copy(flat)
        except PayloadError:
            refused_locally = True
        assert too_deep(flat) is refused_locally, levels
    assert not too_deep({"a": 1}) and not too_deep(None)
