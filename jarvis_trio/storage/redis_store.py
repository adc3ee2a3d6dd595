"""The Redis store (``self._redis_store``): key/value, hashes and streams, shared by agents.

Enough for an episodic ledger that several agents, on several nodes, append to and read:
values are JSON (checked at the call, :class:`~jarvis_trio.errors.PayloadError` names the
offending path), keys are strings used as given. Every method is a Trio coroutine that runs
its command in a worker thread (:mod:`jarvis_trio._redis`); a call that meets an unreachable
Redis retries with backoff for ``retry_window`` seconds, then raises
:class:`~jarvis_trio.errors.RedisUnavailable`. A write retried after the connection broke
may have been applied once already: ``set``/``hset``/``delete`` are idempotent, ``append``
may then add the record twice.

Without ``redis_url``, or when Redis is unreachable at start, :func:`open_redis_store`
yields ``None`` (with a WARNING in the second case): agents guard with
``if self._redis_store:``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import msgspec
import redis
import trio

from .._redis import Backoff, RedisClient, is_transient, open_redis_client
from .._sides import HostSlot, trio_side
from ..config import MeshConfig
from ..errors import PayloadError, RedisUnavailable
from ..payload import check_json

__all__ = ["RedisStore", "StreamEntry", "open_redis_store"]

log = logging.getLogger("jarvis_trio.storage.redis")

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_FIELD = b"data"


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One record of a stream: its Redis id (``"<ms>-<seq>"``, increasing) and its data."""

    id: str
    data: Any


def _key(name: object, what: str = "key") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"Redis store {what} must be a non-empty string, got {name!r}")
    return name


def _encode(value: object, where: str) -> bytes:
    check_json(value, root=where)
    return _encoder.encode(value)


def _decode(data: bytes | None, where: str) -> Any:
    if data is None:
        return None
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        raise PayloadError(where, data[:64], "the stored value is not JSON") from None


def _entries(raw: list[Any], stream: str) -> list[StreamEntry]:
    entries = []
    for entry_id, fields in raw:
        ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        entries.append(StreamEntry(ident, _decode(fields.get(_FIELD), f"{stream}[{ident}]")))
    return entries


def _xread(name: str, after: str, count: int, block: int, r: redis.Redis) -> Any:
    return r.xread({name: after}, count=count, block=block)


class RedisStore:
    """Async key/value, hash and stream operations on one Redis server."""

    def __init__(
        self, client: RedisClient, *, retry_window: float = 10.0, host: HostSlot | None = None
    ) -> None:
        self._host_slot = HostSlot() if host is None else host  # see jarvis_trio._sides
        self._client = client
        self.retry_window = retry_window

    def __repr__(self) -> str:
        return f"<RedisStore {self._client.safe_url}>"

    async def _call(self, fn: Callable[[redis.Redis], Any]) -> Any:
        backoff = Backoff(cap=self._client.retry_cap)
        deadline = trio.current_time() + self.retry_window
        while True:
            try:
                return await self._client.run(fn)
            except Exception as error:
                if not is_transient(error):
                    raise
                if trio.current_time() >= deadline:
                    raise RedisUnavailable(
                        f"Redis at {self._client.safe_url} unreachable for "
                        f"{self.retry_window:g} s: {error}"
                    ) from error
                log.debug("Redis call failed (%s); retrying", error)
                remaining = max(0.0, deadline - trio.current_time())
                await trio.sleep(min(backoff.next_delay(), remaining))

    # key / value -------------------------------------------------------------------------

    @trio_side
    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none."""
        name = _key(key)
        data = await self._call(lambda r: r.get(name))
        return default if data is None else _decode(data, name)

    @trio_side
    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; with ``ttl`` (seconds) it expires."""
        name = _key(key)
        if ttl is not None and not ttl > 0:
            raise ValueError(f"Redis store ttl must be a positive number of seconds, got {ttl!r}")
        data = _encode(value, name)
        px = max(1, round(ttl * 1000)) if ttl is not None else None
        await self._call(lambda r: r.set(name, data, px=px))

    @trio_side
    async def delete(self, *keys: str) -> int:
        """Delete keys (of any kind); returns how many existed."""
        names = [_key(key) for key in keys]
        if not names:
            return 0
        return int(await self._call(lambda r: r.delete(*names)))

    # hashes ------------------------------------------------------------------------------

    @trio_side
    async def hset(self, key: str, field: str, value: Any) -> bool:
        """Set one field of a hash; True if the field is new."""
        name, item = _key(key), _key(field, "hash field")
        data = _encode(value, f"{name}.{item}")
        return bool(await self._call(lambda r: r.hset(name, item, data)))

    @trio_side
    async def hget(self, key: str, field: str, default: Any = None) -> Any:
        """One field of a hash, or ``default``."""
        name, item = _key(key), _key(field, "hash field")
        data = await self._call(lambda r: r.hget(name, item))
        return default if data is None else _decode(data, f"{name}.{item}")

    @trio_side
    async def hgetall(self, key: str) -> dict[str, Any]:
        """Every field of a hash (empty when the hash does not exist)."""
        name = _key(key)
        raw = await self._call(lambda r: r.hgetall(name))
        return {k.decode(): _decode(v, f"{name}.{k.decode()}") for k, v in raw.items()}

    # streams -----------------------------------------------------------------------------

    @trio_side
    async def append(self, stream: str, record: Any, *, maxlen: int | None = 10_000) -> str:
        """Append ``record`` to ``stream``; returns its id. The stream keeps about ``maxlen``
        newest records (``MAXLEN ~``; ``None``: unbounded)."""
        name = _key(stream, "stream")
        if maxlen is not None and (isinstance(maxlen, bool) or maxlen <= 0):
            raise ValueError(f"stream maxlen must be a positive whole number or None: {maxlen!r}")
        data = _encode(record, name)
        entry_id = await self._call(
            lambda r: r.xadd(name, {_FIELD: data}, maxlen=maxlen, approximate=True)
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    @trio_side
    async def tail(self, stream: str, n: int = 10) -> list[StreamEntry]:
        """The ``n`` newest records, oldest first."""
        name = _key(stream, "stream")
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"tail n must be a positive whole number, got {n!r}")
        raw = await self._call(lambda r: r.xrevrange(name, count=n))
        return list(reversed(_entries(raw, name)))

    @trio_side
    async def read_after(
        self, stream: str, after_id: str = "0-0", timeout: float | None = 0, count: int = 100
    ) -> list[StreamEntry]:
        """Up to ``count`` records newer than ``after_id``, oldest first.

        Waits for the first one up to ``timeout`` seconds (``0``: no wait, ``None``: until one
        comes), on a dedicated connection with a bounded server-side ``BLOCK`` — no polling.
        Pass the id of the last record seen to follow a stream.
        """
        name = _key(stream, "stream")
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise ValueError(f"read_after count must be a positive whole number, got {count!r}")
        after = _key(after_id, "stream id")
        if timeout is None or timeout > 0:
            deadline = math.inf if timeout is None else trio.current_time() + timeout
            backoff = Backoff(cap=self._client.retry_cap)
            while True:
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    return []
                block = max(1, round(min(remaining, self._client.max_block) * 1000))
                try:
                    read = partial(_xread, name, after, count, block)
                    raw: Any = await self._client.blocking(read, name)
                except Exception as error:
                    if not is_transient(error):
                        raise
                    log.debug("blocking read of %s failed (%s); retrying", name, error)
                    await trio.sleep(min(backoff.next_delay(), max(0.0, remaining)))
                    continue
                backoff.reset()
                if raw:
                    return _entries(raw[0][1], name)
        tail_raw: Any = await self._call(lambda r: r.xread({name: after}, count=count))
        return _entries(tail_raw[0][1], name) if tail_raw else []


@asynccontextmanager
async def open_redis_store(
    config: MeshConfig, *, connect_timeout: float = 1.0, host: HostSlot | None = None
) -> AsyncIterator[RedisStore | None]:
    """The node's Redis store, or ``None`` without ``redis_url`` or when Redis is unreachable
    at start (then one WARNING names the URL)."""
    if config.redis_url is None:
        yield None
        return
    try:
        client = await open_redis_client(config.redis_url, connect_timeout=connect_timeout)
    except RedisUnavailable as error:
        log.warning("%s; agents get no Redis store (self._redis_store is None)", error)
        yield None
        return
    try:
        yield RedisStore(client, host=host)
    finally:
        client.close()
