"""BlobStorage on every backend: a real temporary folder, a real S3 server (moto) and a real
redis-server. Round trips, refusals, atomicity, collisions; the tests about symlinks, fsync
and the folder itself run on the filesystem only (``FILE_ONLY``)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio

from jarvis_trio._redis import open_redis_client
from jarvis_trio.errors import BlobNotFound, BlobTooLarge, StorageError, UnsafePathError
from jarvis_trio.storage.blob import BlobStorage
from jarvis_trio.storage.blob_redis import RedisBackend
from jarvis_trio.storage.blob_s3 import S3Backend
from jarvis_trio.testing.redis_server import RedisServer
from jarvis_trio.testing.s3_server import MotoS3Server


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blob_storage"


BACKENDS = ["file", "s3", pytest.param("redis", marks=pytest.mark.redis)]
FILE_ONLY = pytest.mark.parametrize("store_factory", ["file"], indirect=True)


@pytest.fixture(params=BACKENDS)
async def store_factory(
    request: pytest.FixtureRequest, root: Path
) -> AsyncIterator[Callable[..., BlobStorage]]:
    """Makes stores on the parametrized backend, each test in a fresh namespace."""
    kind = request.param
    space = uuid.uuid4().hex[:12]
    if kind == "file":
        yield lambda **options: BlobStorage(root, **options)
    elif kind == "s3":
        s3: MotoS3Server = request.getfixturevalue("s3_server")
        env = s3.environ()
        url = f"s3://jarvis-test/{space}"
        yield lambda **options: BlobStorage(backend=S3Backend(url, environ=env), **options)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        client = await open_redis_client(server.url)
        try:
            yield lambda **options: BlobStorage(backend=RedisBackend(client, space), **options)
        finally:
            client.close()


@pytest.fixture
def store(store_factory: Callable[..., BlobStorage]) -> BlobStorage:
    return store_factory()


def on_disk(store: BlobStorage, root: Path) -> bool:
    return store.location == str(root)


async def test_save_read_exists_delete_round_trip(store: BlobStorage, root: Path) -> None:
    name = await store.save("escalations/support-swarm/cust-003-1700000000.txt", "ESCALATION #1\n")
    assert name == "escalations/support-swarm/cust-003-1700000000.txt"
    if on_disk(store, root):
        assert (root / name).read_text() == "ESCALATION #1\n"
    assert await store.read(name) == b"ESCALATION #1\n"
    assert await store.read_text(name) == "ESCALATION #1\n"
    assert await store.exists(name)
    assert await store.delete(name) is True
    assert not await store.exists(name)
    assert await store.delete(name) is False


async def test_bytes_and_equivalent_spellings(store: BlobStorage) -> None:
    await store.save("./a//b.bin", b"\x00\x01")
    assert await store.read("a/b.bin") == b"\x00\x01"
    assert await store.exists("a/./b.bin")


async def test_read_of_missing_blob_is_blob_not_found(store: BlobStorage) -> None:
    with pytest.raises(BlobNotFound, match=r"nope\.txt") as info:
        await store.read("nope.txt")
    assert isinstance(info.value, FileNotFoundError)
    await store.save("folder/x.txt", "x")
    with pytest.raises(BlobNotFound, match="folder"):
        await store.read("folder")
    with pytest.raises(BlobNotFound):
        await store.read("folder/x.txt/deeper")


async def test_list_is_sorted_filtered_by_prefix_and_skips_temporaries(
    store: BlobStorage, root: Path
) -> None:
    for name in ("b/2.txt", "a/1.txt", "a/0.txt", "ab.txt", "c.txt"):
        await store.save(name, name)
    if on_disk(store, root):
        (root / "a" / ".blobtmp-deadbeef").write_bytes(b"half")
    assert await store.list() == ["a/0.txt", "a/1.txt", "ab.txt", "b/2.txt", "c.txt"]
    assert await store.list("a/") == ["a/0.txt", "a/1.txt"]
    assert await store.list("a") == ["a/0.txt", "a/1.txt", "ab.txt"]
    assert await store.list("a/1") == ["a/1.txt"]
    assert await store.list("missing/") == []


async def test_list_over_the_limit_is_an_error_not_a_truncation(store: BlobStorage) -> None:
    for i in range(4):
        await store.save(f"many/{i}.txt", "x")
    assert len(await store.list("many/", limit=4)) == 4
    with pytest.raises(StorageError, match="more than 3 blobs"):
        await store.list("many/", limit=3)


async def test_list_of_an_empty_store_before_any_save(store: BlobStorage) -> None:
    assert await store.list() == []


ESCAPES = [
    "../outside.txt",
    "a/../../outside.txt",
    "../blob_storage_evil/x",
    "/etc/passwd",
    "//etc/passwd",
    "a/..",
    "..",
    "",
    ".",
    "./",
    "a\x00b",
    "a\\..\\b",
    "C:/windows/x",
    ".blobtmp-1234",
]


@pytest.mark.parametrize("path", ESCAPES)
async def test_every_escaping_or_malformed_path_is_refused(
    store: BlobStorage, root: Path, path: str
) -> None:
    for call in (
        lambda: store.save(path, "x"),
        lambda: store.read(path),
        lambda: store.exists(path),
        lambda: store.delete(path),
    ):
        with pytest.raises(UnsafePathError):
            await call()
    assert not (root.parent / "outside.txt").exists()
    assert not (root.parent / "blob_storage_evil").exists()


async def test_non_string_path_is_refused(store: BlobStorage) -> None:
    with pytest.raises(UnsafePathError, match="must be a str"):
        await store.save(b"x.txt", "x")  # type: ignore[arg-type]


async def test_list_prefix_escapes_are_refused(store: BlobStorage) -> None:
    for prefix in ("../", "../blob_storage_evil", "/etc", "a\x00"):
        with pytest.raises(UnsafePathError):
            await store.list(prefix)


def links_out_of(root: Path) -> Path:
    """root/link -> ../blob_storage_evil and root/file-link.txt -> a file in it."""
    evil = root.parent / "blob_storage_evil"
    evil.mkdir()
    (evil / "secret.txt").write_text("secret")
    root.mkdir()
    (root / "link").symlink_to(evil, target_is_directory=True)
    (root / "file-link.txt").symlink_to(evil / "secret.txt")
    return evil


@FILE_ONLY
async def test_symlinks_pointing_out_are_refused(store: BlobStorage, root: Path) -> None:
    evil = links_out_of(root)
    with pytest.raises(UnsafePathError, match="outside the storage root"):
        await store.save("link/new.txt", "x")
    with pytest.raises(UnsafePathError):
        await store.read("link/secret.txt")
    with pytest.raises(UnsafePathError):
        await store.read("file-link.txt")
    with pytest.raises(UnsafePathError):
        await store.delete("file-link.txt")
    with pytest.raises(UnsafePathError):
        await store.list("link/")
    assert not (evil / "new.txt").exists()
    assert (evil / "secret.txt").read_text() == "secret"
    # The walk from the root lists neither the link's contents nor the file link.
    assert await store.list() == []


@FILE_ONLY
async def test_symlink_staying_inside_the_root_is_followed(store: BlobStorage, root: Path) -> None:
    await store.save("real/a.txt", "inside")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert await store.read("alias/a.txt") == b"inside"


async def test_root_that_is_a_sibling_prefix_of_the_target_is_not_fooled(
    tmp_path: Path,
) -> None:
    # A string-prefix check would accept /tmp/x/blob_storage_evil for root /tmp/x/blob_storage.
    store = BlobStorage(tmp_path / "blob_storage")
    (tmp_path / "blob_storage").mkdir()
    (tmp_path / "blob_storage_evil").mkdir()
    (tmp_path / "blob_storage" / "door").symlink_to(tmp_path / "blob_storage_evil")
    with pytest.raises(UnsafePathError):
        await store.save("door/x", "x")
    assert list((tmp_path / "blob_storage_evil").iterdir()) == []


async def test_same_name_twice_keeps_both(store: BlobStorage) -> None:
    first = await store.save("escalations/cust-1-1700000000.txt", "one")
    second = await store.save("escalations/cust-1-1700000000.txt", "two")
    third = await store.save("escalations/cust-1-1700000000.txt", "three")
    assert first == "escalations/cust-1-1700000000.txt"
    assert second == "escalations/cust-1-1700000000-2.txt"
    assert third == "escalations/cust-1-1700000000-3.txt"
    assert [await store.read_text(n) for n in (first, second, third)] == ["one", "two", "three"]


async def test_overwrite_replaces_in_place(store: BlobStorage) -> None:
    await store.save("x.txt", "old")
    assert await store.save("x.txt", "new", overwrite=True) == "x.txt"
    assert await store.read_text("x.txt") == "new"
    assert await store.list() == ["x.txt"]


async def test_concurrent_saves_racing_on_one_name_are_all_kept(store: BlobStorage) -> None:
    names: list[str] = []

    async def save(i: int) -> None:
        names.append(await store.save("race/report.txt", f"writer {i}"))

    async with trio.open_nursery() as nursery:
        for i in range(24):
            nursery.start_soon(save, i)
    assert len(set(names)) == 24
    contents = {await store.read_text(n) for n in names}
    assert contents == {f"writer {i}" for i in range(24)}
    assert sorted(await store.list("race/")) == sorted(names)


@FILE_ONLY
async def test_write_is_atomic_and_leaves_no_temporary(
    store: BlobStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.save("doc.txt", "complete old version")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "simulated disk failure")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="simulated disk failure") as caught:
        await store.save("doc.txt", "new version that never lands", overwrite=True)
    assert not isinstance(caught.value, OSError)  # one error type, naming the blob
    assert "doc.txt" in str(caught.value)
    monkeypatch.undo()
    assert await store.read_text("doc.txt") == "complete old version"
    assert sorted(p.name for p in await trio.Path(root).iterdir()) == ["doc.txt"]


@FILE_ONLY
async def test_saved_file_is_fsynced_before_it_appears(
    store: BlobStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def link(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        events.append("link")
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    await store.save("d.txt", "x")
    assert events[:2] == ["fsync", "link"]


async def test_size_limit_on_save_and_read(
    store_factory: Callable[..., BlobStorage], root: Path
) -> None:
    store = store_factory(max_blob_size=8)
    with pytest.raises(BlobTooLarge, match="9 bytes"):
        await store.save("big.bin", b"123456789")
    assert not await store.exists("big.bin")
    await store.save("small.bin", b"1")
    # a blob written by a store with a larger limit (or by hand) is refused on read
    await store_factory().save("outside-made.bin", b"0123456789")
    with pytest.raises(BlobTooLarge):
        await store.read("outside-made.bin")


async def test_data_of_wrong_type_is_refused(store: BlobStorage) -> None:
    with pytest.raises(TypeError, match="must be str or bytes"):
        await store.save("x.json", {"a": 1})  # type: ignore[arg-type]


@FILE_ONLY
async def test_saving_over_a_folder_or_under_a_file_is_a_storage_error(
    store: BlobStorage,
) -> None:
    await store.save("f/inner.txt", "x")
    with pytest.raises(StorageError, match="folder"):
        await store.save("f", "x", overwrite=True)
    await store.save("plain.txt", "x")
    with pytest.raises(StorageError):
        await store.save("plain.txt/child.txt", "x")


def test_constructor_checks_its_limit(root: Path) -> None:
    with pytest.raises(ValueError, match="max_blob_size"):
        BlobStorage(root, max_blob_size=0)
    assert BlobStorage("relative/dir").root.is_absolute()


async def test_running_out_of_sibling_names_is_a_storage_error(
    store: BlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jarvis_trio.storage.blob.MAX_SIBLINGS", 2)
    assert await store.save("n.txt", "1") == "n.txt"
    assert await store.save("n.txt", "2") == "n-2.txt"
    assert await store.save("n.txt", "3") == "n-3.txt"
    with pytest.raises(StorageError, match="siblings are all taken"):
        await store.save("n.txt", "4")
    assert await store.list() == ["n-2.txt", "n-3.txt", "n.txt"]


@FILE_ONLY
async def test_deleting_through_an_in_root_symlink_removes_the_link_not_the_target(
    store: BlobStorage, root: Path
) -> None:
    await store.save("real/a.txt", "kept")
    (root / "alias.txt").symlink_to(root / "real" / "a.txt")
    assert await store.read("alias.txt") == b"kept"
    assert await store.delete("alias.txt")
    assert not (root / "alias.txt").is_symlink() and not (root / "alias.txt").exists()
    assert await store.read("real/a.txt") == b"kept"


@FILE_ONLY
async def test_a_name_over_255_bytes_is_a_storage_error(store: BlobStorage) -> None:
    name = "x" * 256 + ".txt"
    for call in (store.save(name, "x"), store.read(name), store.exists(name), store.delete(name)):
        try:
            await call
        except BlobNotFound:
            continue  # read: there is no such blob, which is also true
        except StorageError as error:
            assert not isinstance(error, OSError)
            assert "too long" in str(error).lower()
            continue
        except OSError as error:  # the bug: a bare OSError
            pytest.fail(f"bare OSError: {error!r}")


FULL_DISK = """
import resource, signal, sys, trio
from jarvis_trio.errors import StorageError
from jarvis_trio.storage.blob import BlobStorage

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

async def main():
    store = BlobStorage(sys.argv[1])
    try:
        await store.save("big.bin", b"x" * 65536)
    except StorageError as error:
        print("StorageError", error)
    else:
        print("saved")

trio.run(main)
"""


async def test_a_full_disk_is_a_storage_error(tmp_path: Path) -> None:
    """The file-size limit of a child process stands in for a full disk: the write fails
    half way with an OSError, which the caller must see as a StorageError."""
    run = await trio.run_process(
        [sys.executable, "-c", FULL_DISK, str(tmp_path / "blobs")],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().startswith("StorageError"), run.stdout
    assert "big.bin" in run.stdout.decode()
    assert [p.name for p in (tmp_path / "blobs").iterdir()] == []  # no temporary left
