"""The S3 blob backend when the store is unreachable or answers errors; backend choice.

A small TCP proxy on the test's Trio loop stands between the client and the moto server and
is switched between passing traffic, refusing connections, answering ``503`` and cutting an
upload half-way. Every failure must be a ``StorageError`` naming the store, leave no object
behind, and lose nothing saved before.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio

from jarvis_trio.errors import StorageError
from jarvis_trio.storage.blob import BlobStorage
from jarvis_trio.storage.blob_s3 import S3Backend
from jarvis_trio.testing.redis_server import RedisServer
from jarvis_trio.testing.s3_server import MotoS3Server

_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class FaultyProxy:
    """Forwards 127.0.0.1:port to the S3 server; ``mode`` decides what the next bytes meet:
    ``pass``, ``refuse`` (the connection is closed), ``error`` (503), ``cut`` (at most
    ``cut_after`` bytes of a request get through, then the connection is closed)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.cut_after = 16 * 1024
        self.port = 0

    async def handle(self, client: trio.SocketStream) -> None:
        async with client:
            if self.mode == "refuse":
                return
            upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream)
            async with upstream, trio.open_nursery() as nursery:

                async def back() -> None:
                    async for chunk in upstream:
                        await client.send_all(chunk)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(back)
                forwarded = 0
                async for chunk in client:
                    if self.mode in ("refuse", "error"):
                        if self.mode == "error":
                            await client.send_all(_503)
                        break
                    if self.mode == "cut":
                        room = self.cut_after - forwarded
                        if room <= 0:
                            break
                        chunk = chunk[:room]
                    forwarded += len(chunk)
                    await upstream.send_all(chunk)
                nursery.cancel_scope.cancel()


@pytest.fixture
async def proxied(s3_server: MotoS3Server) -> AsyncIterator[tuple[FaultyProxy, BlobStorage]]:
    proxy = FaultyProxy(s3_server.port)
    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        proxy.port = listeners[0].socket.getsockname()[1]
        env = {**s3_server.environ(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        url = f"s3://jarvis-test/faults-{uuid.uuid4().hex[:8]}"
        yield proxy, BlobStorage(backend=S3Backend(url, environ=env))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["refuse", "error", "cut"])
async def test_failures_name_the_store_and_leave_nothing_half_written(
    proxied: tuple[FaultyProxy, BlobStorage], mode: str
) -> None:
    proxy, store = proxied
    saved = {f"kept/{n}.bin": os.urandom(64 * 1024) for n in range(3)}
    for name, data in saved.items():
        assert await store.save(name, data) == name
    proxy.mode = mode
    with trio.fail_after(30), pytest.raises(StorageError) as failure:
        await store.save("new/report.bin", os.urandom(64 * 1024))
    message = str(failure.value)
    assert store.location in message and "cannot save 'new/report.bin'" in message
    if mode != "cut":  # reads, listings and lookups fail the same way
        for call in (lambda: store.read("kept/0.bin"), lambda: store.list("kept/")):
            with trio.fail_after(30), pytest.raises(StorageError, match=store.location):
                await call()
    proxy.mode = "pass"
    assert await store.list() == sorted(saved)  # nothing half-written, nothing lost
    for name, data in saved.items():
        assert await store.read(name) == data
    assert not await store.exists("new/report.bin")


async def test_blob_storage_url_chooses_the_backend(
    s3_server: MotoS3Server,
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in s3_server.environ().items():  # credentials come from AWS_*
        monkeypatch.setenv(variable, value)
    from jarvis_trio.config import MeshConfig
    from jarvis_trio.storage.blob import open_blob_storage

    def config(**values: object) -> MeshConfig:
        return MeshConfig.load(values, environ=s3_server.environ(), env_file=None)

    async with open_blob_storage(config(blob_storage_url=f"file://{tmp_path}/b")) as store:
        assert store.location == f"{tmp_path}/b"
        await store.save("x.txt", "file")
        assert (tmp_path / "b" / "x.txt").read_text() == "file"
    async with open_blob_storage(config(blob_storage_url="s3://jarvis-test/chosen")) as store:
        assert store.location == "s3://jarvis-test/chosen"  # endpoint from AWS_ENDPOINT_URL
        name = await store.save("x.txt", "s3")
        assert await store.read_text(name) == "s3"
        with pytest.raises(StorageError, match="no local root"):
            _ = store.root
    async with open_blob_storage(config(blob_storage_url=redis_server.url + "?namespace=n1")) as s:
        assert "namespace n1" in s.location
        assert await s.save("x.txt", "redis") == "x.txt"
        assert await s.save("x.txt", "again") == "x-2.txt"
    with pytest.raises(StorageError, match="unreachable at start"):
        async with open_blob_storage(config(blob_storage_url="redis://127.0.0.1:1/0")):
            pass
