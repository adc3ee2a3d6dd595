"""JSON-compatibility of message payloads, checked where a payload enters the runtime.

Every sending call (``notify``, ``request``, ``respond``, ``broadcast``, ``ask_async``) passes
its payload and context through :func:`checked_copy` before choosing a route, so a same-node
delivery refuses exactly what a cross-node one would: a refused value raises
:class:`~jarvis_trio.errors.PayloadError` naming its path (``$.items[2].when``).

Aliasing: the check *copies* while it walks. Same-node delivery never serialises, yet the
receiver gets containers of its own (tuples become lists, as after a JSON round trip), so a
sender that mutates its dict after ``notify()`` cannot change what the receiver sees, and the
receiver cannot change the sender's data. Scalars are immutable and shared.

Accepted: ``dict`` with ``str`` keys, ``list``/``tuple``, ``str``, ``int`` in the signed or
unsigned 64-bit range (what the binary wire codec carries), finite ``float``, ``bool``,
``None``; subclasses of these (``StrEnum``, ``OrderedDict``) are converted to the base type.
Nesting deeper than :data:`MAX_DEPTH` is refused, which also catches reference cycles.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import PayloadError

__all__ = [
    "MAX_DEPTH",
    "check_json",
    "checked_context",
    "checked_copy",
    "format_path",
    "too_deep",
]

MAX_DEPTH = 64
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1


class _Refused(Exception):
    """Internal: carries the reason outwards while each level adds its path segment."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.segments: list[str | int] = []

    def error(self, root: str) -> PayloadError:
        """The public error, once every level has added its segment (innermost first)."""
        return PayloadError(format_path(self.segments[::-1], root), self.value, self.reason)


def format_path(segments: list[str | int], root: str = "$") -> str:
    """Render path segments (outermost first) as ``$.key[3]["odd key"]``."""
    out = [root]
    for seg in segments:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif seg.isidentifier():
            out.append(f".{seg}")
        else:
            out.append(f"[{seg!r}]")
    return "".join(out)


def checked_copy(value: object, *, what: str = "message") -> dict[str, Any]:
    """Return a JSON-compatible copy of the dict ``value`` or raise :class:`PayloadError`."""
    if type(value) is dict:
        # fast path: a flat dict of short scalars, the common message shape
        out: dict[str, Any] = {}
        for key, item in value.items():
            kind = type(item)
            if (
                type(key) is not str
                or not key.isascii()
                or not (
                    (kind is str and item.isascii())
                    or (kind is int and _INT_MIN <= item <= _INT_MAX)
                    or kind is bool
                    or item is None
                )
            ):
                break
            out[key] = item
        else:
            return out
    elif not isinstance(value, dict):
        raise PayloadError("$", value, f"the {what} must be a dict, not {type(value).__name__}")
    try:
        result: dict[str, Any] = _copy_dict(value, 0)
    except _Refused as refused:
        raise refused.error("$") from None
    except RecursionError:
        raise PayloadError("$", value, "nested too deeply") from None
    return result


def check_json(value: object, root: str = "$") -> None:
    """Raise :class:`PayloadError` naming the path (from ``root``) of the first value with no
    JSON form. Unlike :func:`checked_copy` the value may be of any JSON type (the Redis
    store's values); the rules are the same."""
    try:
        _copy(value, 0)
    except _Refused as refused:
        raise refused.error(root) from None


def checked_context(context: object) -> dict[str, Any]:
    """A context is optional metadata: ``None`` means an empty one."""
    if not context and (context is None or type(context) is dict):
        return {}
    return checked_copy(context, what="context")


def _utf8(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form (a lone surrogate has none: JSON cannot carry it)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


_SURROGATE = "a lone surrogate has no UTF-8 form"


def _copy_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise _Refused(value, f"nested deeper than {MAX_DEPTH} levels (or a reference cycle)")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            if isinstance(key, str):
                key = str.__str__(key)
            else:
                refused = _Refused(key, f"keys must be str, got {type(key).__name__} {key!r}")
                refused.segments.append(key if isinstance(key, int) else repr(key))
                raise refused
        if not _utf8(key):
            refused = _Refused(key, f"key {key!r}: {_SURROGATE}")
            refused.segments.append(key)
            raise refused
        try:
            out[key] = _copy(item, depth + 1)
        except _Refused as refused:
            refused.segments.append(key)
            raise
    return out


def _copy_list(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
    if depth >= MAX_DEPTH:
        raise _Refused(value, f"nested deeper than {MAX_DEPTH} levels (or a reference cycle)")
    out: list[Any] = []
    index = 0
    try:
        for index, item in enumerate(value):  # noqa: B007 - index is used in the handler
            out.append(_copy(item, depth + 1))
    except _Refused as refused:
        refused.segments.append(index)
        raise
    return out


def _copy(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is bool or value is None:
        return value
    if kind is str:
        if _utf8(value):
            return value
        raise _Refused(value, _SURROGATE)
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        raise _Refused(value, "integer outside the 64-bit range")
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Refused(value, f"{value!r} has no JSON representation")
    if kind is dict:
        return _copy_dict(value, depth)
    if kind is list or kind is tuple:
        return _copy_list(value, depth)
    return _copy_subclass(value, depth)


def _copy_subclass(value: Any, depth: int) -> Any:
    """Slow path: subclasses of the JSON types become the base type; anything else is refused."""
    if isinstance(value, str):
        return _copy(str.__str__(value), depth)
    if isinstance(value, int):
        return _copy(int(value), depth)
    if isinstance(value, float):
        return _copy(float(value), depth)
    if isinstance(value, dict):
        return _copy_dict(value, depth)
    if isinstance(value, list | tuple):
        return _copy_list(value, depth)
    raise _Refused(value, f"{type(value).__name__} is not a JSON type")


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether a decoded JSON value nests deeper than ``limit`` containers -- what a local
    send refuses, checked on what a peer delivers so that both routes accept the same.

    Runs on every inbound message: a recursion bounded by ``limit`` (a few frames for the
    usual payload) costs a fifth of an explicit stack of ``(item, depth)`` tuples."""
    kind = type(value)
    if kind is not dict and kind is not list:
        return False
    return _deeper(value, limit)


def _deeper(container: Any, budget: int) -> bool:
    if budget <= 0:
        return True
    for child in container.values() if type(container) is dict else container:
        kind = type(child)
        if (kind is dict or kind is list) and _deeper(child, budget - 1):
            return True
    return False
