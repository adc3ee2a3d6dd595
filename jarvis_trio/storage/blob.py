"""Blob storage on the local filesystem (``self._blob_storage``).

Every blob lives under one root folder (``blob_storage/`` by default). Three rules keep it
safe and honest:

* **No escape.** A blob path is a relative, ``/``-separated name. ``..`` components, absolute
  paths, backslashes, NUL bytes, empty names and the reserved temporary prefix are refused
  with :class:`~jarvis_trio.errors.UnsafePathError` before the filesystem is touched. The
  remaining path is then resolved (following symlinks) and must still lie inside the resolved
  root, compared with :meth:`pathlib.Path.is_relative_to` -- never by string prefix, which is
  what let ``../blob_storage_evil/x`` through in the original. Symlinks that stay inside the
  root are followed. The check runs at every call (and again after folders are created);
  the root is assumed to be changed only through this class, not raced by another process
  swapping folders for symlinks between the check and the write. :meth:`BlobStorage.delete`
  of a name that is itself a symlink removes the link, never the file it points at.
* **One error type.** Whatever the filesystem says -- a name over 255 bytes, a full disk, a
  permission -- reaches the caller as :class:`~jarvis_trio.errors.StorageError` naming the
  blob, never a bare ``OSError``.
* **Atomic writes.** Data goes to a temporary file in the target folder, is flushed and
  fsynced, and only then appears under its name (``os.link`` when the name must be new,
  ``os.replace`` when overwriting). A reader sees the old blob or the new one, never half.
* **No silent collisions.** :meth:`BlobStorage.save` never overwrites unless asked
  (``overwrite=True``). When the name is taken it stores under the first free sibling
  ``name-2.ext``, ``name-3.ext``, ... and returns the name actually written. ``os.link``
  fails if the name exists, so concurrent saves racing on one name each get their own.

The same rules hold on the other backends, chosen by ``blob_storage_url``
(:func:`open_blob_storage`): ``s3://bucket/prefix`` (:mod:`.blob_s3`, conditional puts) and
``redis://...`` (:mod:`.blob_redis`, one script per write). The front below checks every
name, prefix and size before a backend sees it and applies the ``name-N`` rule with the
backend's atomic create-if-absent, so the semantics are the same everywhere; the filesystem
creates-if-absent by hard link. One difference is inherent: object stores have no folders,
so ``a`` and ``a/b`` may both exist there.

All file I/O runs in worker threads (``trio.to_thread.run_sync``) so the event loop never
blocks on a disk; the thread finishes its step even if the caller is cancelled, so a write is
either complete or absent. Every public method is ``@trio_side`` (callable from asyncio hosts).
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from .._sides import HostSlot, trio_side
from ..errors import BlobNotFound, BlobTooLarge, StorageError, UnsafePathError

if TYPE_CHECKING:
    from ..config import MeshConfig

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_MAX_BLOB_SIZE",
    "MAX_SIBLINGS",
    "BlobBackend",
    "BlobStorage",
    "open_blob_storage",
]

DEFAULT_MAX_BLOB_SIZE = 256 * 1024 * 1024
"""Largest blob saved or read, in bytes (blobs are held in memory whole)."""

DEFAULT_LIST_LIMIT = 10_000
"""Most names :meth:`BlobStorage.list` returns by default; more is a :class:`StorageError`."""

MAX_SIBLINGS = 10_000
"""How many ``name-N`` siblings :meth:`BlobStorage.save` tries before giving up."""

_TMP_PREFIX = ".blobtmp-"
T = TypeVar("T")


class BlobBackend(Protocol):
    """A store of whole, named blobs. Methods block (they run in worker threads) and get
    names the front has already checked. Failures to reach the store raise
    :class:`~jarvis_trio.errors.StorageError` naming it."""

    location: str
    """Where the blobs live, for messages (``s3://bucket/prefix``, a Redis URL)."""

    def put_new(self, name: str, data: bytes) -> bool:
        """Create ``name`` atomically; False, with nothing written, if it exists."""
        ...

    def put_replace(self, name: str, data: bytes) -> None:
        """Create or replace ``name`` atomically."""
        ...

    def get(self, name: str, max_size: int) -> bytes:
        """The blob's bytes; ``BlobNotFound`` / ``BlobTooLarge`` (over ``max_size``)."""
        ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if it existed."""
        ...

    def list(self, prefix: str, limit: int) -> builtins.list[str]:
        """Sorted names starting with ``prefix``; more than ``limit`` is a ``StorageError``."""
        ...


class BlobStorage:
    """Blobs under ``root``; see the module docstring for the safety rules.

    Paths given to and returned by every method are relative to the root, ``/``-separated.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "blob_storage",
        *,
        max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
        host: HostSlot | None = None,
        backend: BlobBackend | None = None,
    ) -> None:
        self._host_slot = HostSlot() if host is None else host  # see jarvis_trio._sides
        if max_blob_size <= 0:
            raise ValueError(f"max_blob_size must be positive, got {max_blob_size}")
        self._root = Path(root).absolute()
        self._max_blob_size = max_blob_size
        self._backend = backend
        # a backend with a bounded connection pool bounds the threads that use it
        self._limiter: trio.CapacityLimiter | None = getattr(backend, "limiter", None)

    @property
    def root(self) -> Path:
        """The storage root on the local filesystem (absolute; created on the first save).

        A store on another backend has none: :class:`StorageError` (see :attr:`location`).
        """
        if self._backend is not None:
            raise StorageError(f"blob storage {self._backend.location} has no local root")
        return self._root

    @property
    def location(self) -> str:
        """Where the blobs live: the root folder, ``s3://bucket/prefix`` or a Redis URL."""
        return str(self._root) if self._backend is None else self._backend.location

    def __repr__(self) -> str:
        return f"BlobStorage({self.location!r})"

    # -- public API ---------------------------------------------------------------------------

    @trio_side
    async def save(self, path: str, data: str | bytes, *, overwrite: bool = False) -> str:
        """Store ``data`` (``str`` is encoded as UTF-8) and return the name written.

        Without ``overwrite`` an existing blob is never replaced: the data goes to the first
        free sibling ``stem-N.suffix`` (N = 2, 3, ...), and that name is returned.
        """
        name = _clean_name(path)
        payload = _as_bytes(data, path)
        if len(payload) > self._max_blob_size:
            raise BlobTooLarge(
                f"blob {name!r} is {len(payload)} bytes, over the limit of "
                f"{self._max_blob_size} bytes"
            )
        return await _in_thread(name, self._limiter, self._save_sync, name, payload, overwrite)

    @trio_side
    async def read(self, path: str) -> bytes:
        """The bytes of the blob at ``path``; :class:`BlobNotFound` if there is none."""
        name = _clean_name(path)
        return await _in_thread(name, self._limiter, self._read_sync, name)

    @trio_side
    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The blob at ``path`` decoded as text."""
        name = _clean_name(path)
        data = await _in_thread(name, self._limiter, self._read_sync, name)
        return data.decode(encoding)

    @trio_side
    async def exists(self, path: str) -> bool:
        """True when a blob (a regular file) is stored at ``path``."""
        name = _clean_name(path)
        return await _in_thread(name, self._limiter, self._exists_sync, name)

    @trio_side
    async def delete(self, path: str) -> bool:
        """Remove the blob at ``path``; True if one was removed, False if there was none."""
        name = _clean_name(path)
        return await _in_thread(name, self._limiter, self._delete_sync, name)

    @trio_side
    async def list(self, prefix: str = "", *, limit: int = DEFAULT_LIST_LIMIT) -> list[str]:
        """Sorted names of the blobs whose name starts with ``prefix``.

        ``prefix`` is a plain string prefix (``"escalations/"`` or ``"escalations/cust-1"``)
        and is checked like a path. More than ``limit`` matches is a :class:`StorageError`
        (narrow the prefix or raise the limit) rather than a silently truncated answer.
        """
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        start = _clean_prefix(prefix)
        return await _in_thread(prefix, self._limiter, self._list_sync, prefix, start, limit)

    # -- worker-thread side ---------------------------------------------------------------------

    def _target(self, name: str) -> tuple[Path, Path]:
        """(resolved root, resolved target) after checking the target stays inside the root."""
        root = self._root.resolve()
        target = (root / name).resolve()
        if not target.is_relative_to(root) or target == root:
            raise UnsafePathError(f"blob path {name!r} resolves outside the storage root {root}")
        return root, target

    def _save_sync(self, name: str, data: bytes, overwrite: bool) -> str:
        if self._backend is not None:
            return _save_first_free(self._backend, name, data, overwrite)
        try:
            return self._save_checked(name, data, overwrite)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
            raise StorageError(f"cannot save blob {name!r}: {error}") from error

    def _save_checked(self, name: str, data: bytes, overwrite: bool) -> str:
        self._root.mkdir(parents=True, exist_ok=True)
        root, target = self._target(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The parent may have been swapped for a symlink between the check and mkdir.
        _, target = self._target(name)
        if target.is_dir():
            raise StorageError(f"blob path {name!r} is a folder")
        folder = target.parent
        tmp = folder / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            _write_synced(tmp, data)
            if overwrite:
                os.replace(tmp, target)
                written = target
            else:
                written = _link_first_free(tmp, target)
            _fsync_dir(folder)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return written.relative_to(root).as_posix()

    def _read_sync(self, name: str) -> bytes:
        if self._backend is not None:
            return self._backend.get(name, self._max_blob_size)
        _, target = self._target(name)
        try:
            with target.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size > self._max_blob_size:
                    raise BlobTooLarge(
                        f"blob {name!r} is {size} bytes, over the limit of "
                        f"{self._max_blob_size} bytes"
                    )
                return file.read(self._max_blob_size + 1)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"no blob named {name!r}") from None
        except IsADirectoryError:
            raise BlobNotFound(f"{name!r} is a folder, not a blob") from None

    def _exists_sync(self, name: str) -> bool:
        if self._backend is not None:
            return self._backend.exists(name)
        _, target = self._target(name)
        return target.is_file()

    def _delete_sync(self, name: str) -> bool:
        if self._backend is not None:
            return self._backend.delete(name)
        root, target = self._target(name)
        # The entry the name itself denotes (its folder resolved, its last part not): when it
        # is a symlink, deleting the blob removes the link, never the file it points at.
        folder = (root / name).parent.resolve()
        entry = folder / PurePosixPath(name).name
        if folder.is_relative_to(root) and entry.is_symlink():
            entry.unlink()
            return True
        if not target.is_file():
            return False
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        return True

    def _list_sync(self, prefix: str, start: str, limit: int) -> builtins.list[str]:
        if self._backend is not None:
            return self._backend.list(prefix, limit)
        root = self._root.resolve()
        base = (root / start).resolve() if start else root
        if not base.is_relative_to(root):
            raise UnsafePathError(f"blob prefix {prefix!r} resolves outside the storage root")
        if not base.is_dir():
            return []
        names: builtins.list[str] = []
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            here = Path(folder)
            for file in sorted(files):
                if file.startswith(_TMP_PREFIX):
                    continue
                full = here / file
                if not full.resolve().is_relative_to(root) or not full.is_file():
                    continue
                name = full.relative_to(root).as_posix()
                if name.startswith(prefix):
                    names.append(name)
                    if len(names) > limit:
                        raise StorageError(
                            f"more than {limit} blobs start with {prefix!r}: narrow the prefix "
                            "or pass a larger limit"
                        )
        names.sort()
        return names


# -- pure helpers -------------------------------------------------------------------------------


async def _in_thread(
    name: str, limiter: trio.CapacityLimiter | None, fn: Callable[..., T], *args: Any
) -> T:
    """Run a storage step in a worker thread; any ``OSError`` the system raises (a name
    too long, a full disk, a permission) becomes a :class:`StorageError` naming the blob."""
    try:
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)
    except StorageError:
        raise
    except OSError as error:
        reason = error.strerror or str(error)
        raise StorageError(f"blob storage failed on {name!r}: {reason}") from error


def _clean_name(path: object) -> str:
    """Check a blob path without touching the filesystem; return its canonical form."""
    if not isinstance(path, str):
        raise UnsafePathError(f"blob path must be a str, got {type(path).__name__}: {path!r}")
    parts = _checked_parts(path, what="blob path")
    if not parts:
        raise UnsafePathError(f"blob path {path!r} is empty")
    return "/".join(parts)


def _clean_prefix(prefix: object) -> str:
    """Check a list prefix; return the folder (possibly empty) the walk starts from."""
    if not isinstance(prefix, str):
        raise UnsafePathError(f"blob prefix must be a str, got {type(prefix).__name__}")
    if prefix == "":
        return ""
    parts = _checked_parts(prefix, what="blob prefix")
    folder = parts if prefix.endswith("/") else parts[:-1]
    return "/".join(folder)


def _checked_parts(text: str, *, what: str) -> builtins.list[str]:
    if "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} contains a NUL byte")
    if "\\" in text:
        raise UnsafePathError(f"{what} {text!r} contains a backslash; use '/' between folders")
    if text.startswith("/") or PurePosixPath(text).is_absolute():
        raise UnsafePathError(f"{what} {text!r} is absolute; give a path relative to the root")
    if len(text) > 2 and text[1] == ":" and text[0].isalpha():
        raise UnsafePathError(f"{what} {text!r} has a drive letter")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    for part in parts:
        if part == "..":
            raise UnsafePathError(f"{what} {text!r} contains '..'")
        if part.startswith(_TMP_PREFIX):
            raise UnsafePathError(f"{what} {text!r} uses the reserved prefix {_TMP_PREFIX!r}")
    return parts


def _as_bytes(data: object, path: str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"blob data for {path!r} must be str or bytes, got {type(data).__name__}")


def _write_synced(file: Path, data: bytes) -> None:
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sibling(target: Path, n: int) -> Path:
    return target.with_name(f"{target.stem}-{n}{target.suffix}")


def _link_first_free(tmp: Path, target: Path) -> Path:
    """Hard-link ``tmp`` to ``target`` or to its first free ``-N`` sibling."""
    siblings = (_sibling(target, n) for n in range(2, MAX_SIBLINGS + 2))
    for candidate in itertools.chain([target], siblings):
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        return candidate
    raise StorageError(f"blob name {target.name!r} and its {MAX_SIBLINGS} siblings are all taken")


def _save_first_free(backend: BlobBackend, name: str, data: bytes, overwrite: bool) -> str:
    """Save through a backend: replace, or create ``name`` or its first free sibling."""
    if overwrite:
        backend.put_replace(name, data)
        return name
    pure = PurePosixPath(name)
    siblings = (
        str(pure.with_name(f"{pure.stem}-{n}{pure.suffix}")) for n in range(2, MAX_SIBLINGS + 2)
    )
    for candidate in itertools.chain([name], siblings):
        if backend.put_new(candidate, data):
            return candidate
    raise StorageError(f"blob name {pure.name!r} and its {MAX_SIBLINGS} siblings are all taken")


@asynccontextmanager
async def open_blob_storage(
    config: MeshConfig, *, host: HostSlot | None = None
) -> AsyncIterator[BlobStorage]:
    """The node's blob storage, chosen by ``blob_storage_url`` (``blob_storage_path`` without
    it): ``file://PATH``, ``s3://bucket/prefix`` or a Redis URL (``?namespace=`` optional).

    A Redis store that cannot be reached at start raises :class:`StorageError` naming it: a
    node told to keep its blobs somewhere does not quietly keep them elsewhere.
    """
    url = config.blob_storage_url
    if url is None or url.startswith("file:"):
        path = config.blob_storage_path if url is None else url.removeprefix("file:")
        if path.startswith("//"):
            path = path[2:]
        yield BlobStorage(path or ".", host=host)
        return
    if url.startswith("s3:"):
        from .blob_s3 import S3Backend

        backend = S3Backend(url, endpoint=config.s3_endpoint_url, region=config.s3_region)
        yield BlobStorage(host=host, backend=backend)
        return
    from .._redis import open_redis_client
    from ..errors import RedisUnavailable
    from .blob_redis import RedisBackend, split_namespace

    redis_url, namespace = split_namespace(url)
    try:
        client = await open_redis_client(redis_url)
    except RedisUnavailable as error:
        raise StorageError(f"Redis blob store unreachable at start: {error}") from error
    try:
        yield BlobStorage(host=host, backend=RedisBackend(client, namespace))
    finally:
        client.close()


def _fsync_dir(folder: Path) -> None:
    """Persist the new directory entry (best effort where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
