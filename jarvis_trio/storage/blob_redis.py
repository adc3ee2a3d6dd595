"""Blob storage in Redis (``blob_storage_url=redis://...``), for small deployments.

Every blob is one string key, ``jarvis:blob:{<namespace>}:<name>``, and a sorted set
``jarvis:blob:{<namespace>}:index`` holds every name (score 0), so listing by prefix is one
``ZRANGE ... BYLEX`` and never a ``SCAN`` of the whole keyspace. The namespace (the URL's
``namespace`` query parameter, ``blobs`` by default) is a Cluster hash tag: a blob and the
index always share a slot, so each write is one script that creates the key and indexes it
together — atomic, and ``SET NX`` inside it means an existing blob is never overwritten
(the front then tries ``name-2.ext``). It also means one namespace lives on one Cluster
master: this backend is for small deployments, not for spreading blobs over a cluster.

The URL is any Redis URL the mailboxes accept (``redis://``, ``redis+cluster://``,
``redis+sentinel://``), with ``?namespace=NAME`` optionally appended. Methods block (the
front runs them in worker threads); a Redis that cannot be reached raises
:class:`~jarvis_trio.errors.StorageError` naming the store.
"""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis

from .._redis import RedisClient, is_transient
from ..errors import BlobNotFound, BlobTooLarge, StorageError

__all__ = ["RedisBackend", "split_namespace"]

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""
_REPLACE = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""
_DELETE = """
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"""
_READ = """
local size = redis.call('STRLEN', KEYS[1])
if size > tonumber(ARGV[1]) then return {size} end
if size == 0 and redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return {size, redis.call('GET', KEYS[1])}
"""


def split_namespace(url: str) -> tuple[str, str]:
    """(Redis URL without ``namespace=``, namespace)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    namespace = (query.pop("namespace", ["blobs"]) or ["blobs"])[0]
    if not namespace or any(c in namespace for c in "{}"):
        raise ValueError(f"blob namespace {namespace!r} must be non-empty, without braces")
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), namespace


class RedisBackend:
    """Blobs as Redis strings under one namespace; see the module docstring."""

    def __init__(self, client: RedisClient, namespace: str = "blobs") -> None:
        self._client = client
        self.namespace = namespace
        self._base = "jarvis:blob:{" + namespace + "}:"
        self._index = self._base + "index"
        self.location = f"{client.safe_url} namespace {namespace}"
        self.describe = f"Redis blob store {self.location}"
        self.limiter = client.limiter  # one thread per pooled connection, as for every call

    def __repr__(self) -> str:
        return f"RedisBackend({self.location!r})"

    def _call(self, action: str, name: str, *args: Any) -> Any:
        try:
            return self._client.sync.execute_command(*args)
        except redis.exceptions.RedisError as error:
            raise StorageError(f"{self.describe}: cannot {action} {name!r}: {error}") from error
        except OSError as error:
            if is_transient(error):
                raise StorageError(f"{self.describe}: cannot {action} {name!r}: {error}") from error
            raise

    def put_new(self, name: str, data: bytes) -> bool:
        key = self._base + "b:" + name
        created = self._call("save", name, "EVAL", _CREATE, 2, key, self._index, data, name)
        return bool(created)

    def put_replace(self, name: str, data: bytes) -> None:
        key = self._base + "b:" + name
        self._call("save", name, "EVAL", _REPLACE, 2, key, self._index, data, name)

    def get(self, name: str, max_size: int) -> bytes:
        key = self._base + "b:" + name
        reply = self._call("read", name, "EVAL", _READ, 1, key, max_size)
        if not reply:
            raise BlobNotFound(f"no blob named {name!r} in {self.location}")
        if len(reply) == 1:
            raise BlobTooLarge(
                f"blob {name!r} is {reply[0]} bytes, over the limit of {max_size} bytes"
            )
        return bytes(reply[1])

    def exists(self, name: str) -> bool:
        return bool(self._call("look up", name, "EXISTS", self._base + "b:" + name))

    def delete(self, name: str) -> bool:
        key = self._base + "b:" + name
        return bool(self._call("delete", name, "EVAL", _DELETE, 2, key, self._index, name))

    def list(self, prefix: str, limit: int) -> builtins.list[str]:
        low = b"[" + prefix.encode() if prefix else b"-"
        high = b"[" + prefix.encode() + b"\xff" if prefix else b"+"
        raw = self._call(
            "list", prefix, "ZRANGE", self._index, low, high, "BYLEX", "LIMIT", 0, limit + 1
        )
        names = [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
        if len(names) > limit:
            raise StorageError(
                f"more than {limit} blobs start with {prefix!r}: narrow the prefix or pass a "
                "larger limit"
            )
        return names
