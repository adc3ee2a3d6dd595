"""The Redis store against a real redis-server: key/value, hashes, streams, fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis
import trio
import trio.testing

from jarvis_trio.config import MeshConfig
from jarvis_trio.errors import PayloadError, RedisUnavailable
from jarvis_trio.storage.redis_store import RedisStore, open_redis_store
from jarvis_trio.testing.ports import free_port
from jarvis_trio.testing.redis_server import RedisServer

from .conftest import unique

pytestmark = pytest.mark.redis


def make_config(**values: object) -> MeshConfig:
    return MeshConfig.load(dict(values), environ={}, env_file=None)


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    async with open_redis_store(make_config(redis_url=redis_server.url)) as opened:
        assert opened is not None
        yield opened


async def test_key_value_with_ttl_and_delete(store: RedisStore, redis_server: RedisServer) -> None:
    redis_url = redis_server.url
    key = unique("k")
    assert await store.get(key) is None
    assert await store.get(key, default={"d": 1}) == {"d": 1}
    await store.set(key, {"nested": [1, "two", None]})
    assert await store.get(key) == {"nested": [1, "two", None]}
    await store.set(key, "short-lived", ttl=30)
    assert await store.get(key) == "short-lived"
    client = redis.Redis.from_url(redis_url)
    try:
        assert 0 < client.pttl(key) <= 30_000
    finally:
        client.close()
    await store.set(key, 1)
    assert await store.delete(key, unique("absent")) == 1
    assert await store.delete() == 0


async def test_hash_fields(store: RedisStore) -> None:
    key = unique("h")
    assert await store.hgetall(key) == {}
    assert await store.hset(key, "status", "open") is True
    assert await store.hset(key, "status", "closed") is False
    await store.hset(key, "count", 3)
    assert await store.hget(key, "status") == "closed"
    assert await store.hget(key, "missing", default=0) == 0
    assert await store.hgetall(key) == {"status": "closed", "count": 3}


async def test_stream_append_tail_and_read_after(store: RedisStore) -> None:
    stream = unique("ledger")
    ids = [await store.append(stream, {"event": n}) for n in range(5)]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    tail = await store.tail(stream, 2)
    assert [(e.id, e.data) for e in tail] == [(ids[3], {"event": 3}), (ids[4], {"event": 4})]
    after = await store.read_after(stream, ids[2])
    assert [e.data["event"] for e in after] == [3, 4]
    assert await store.read_after(stream, ids[4]) == []


async def test_read_after_waits_for_the_next_record(store: RedisStore) -> None:
    stream = unique("ledger")
    last = await store.append(stream, {"event": "first"})
    got = []

    async def follower() -> None:
        got.extend(await store.read_after(stream, last, timeout=None))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            await store.append(stream, {"event": "second"})
    assert [e.data for e in got] == [{"event": "second"}]
    with trio.fail_after(5):
        assert await store.read_after(stream, got[0].id, timeout=0.1) == []


async def test_stream_retention(store: RedisStore) -> None:
    stream = unique("ledger")
    for n in range(300):
        await store.append(stream, {"n": n}, maxlen=50)
    everything = await store.read_after(stream, "0-0", count=1000)
    assert 50 <= len(everything) < 300  # MAXLEN ~ trims whole nodes
    assert everything[-1].data == {"n": 299}


async def test_values_must_be_json(store: RedisStore) -> None:
    with pytest.raises(PayloadError, match=r"\.when"):
        await store.set("k", {"when": object()})
    with pytest.raises(PayloadError, match=r"ledger\.x\[0\]"):
        await store.append("ledger", {"x": [{1}]})
    with pytest.raises(ValueError, match="non-empty string"):
        await store.get("")
    with pytest.raises(ValueError, match="ttl"):
        await store.set("k", 1, ttl=0)


async def test_no_redis_url_means_no_store() -> None:
    async with open_redis_store(make_config()) as nothing:
        assert nothing is None


async def test_unreachable_redis_gives_none_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING, logger="jarvis_trio"):
        async with open_redis_store(make_config(redis_url=url)) as nothing:
            assert nothing is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and url in warnings[0]


async def test_calls_retry_through_a_restart_then_give_up(
    redis_server_factory: object,
) -> None:
    server = redis_server_factory(persistent=True)  # type: ignore[operator]
    async with open_redis_store(make_config(redis_url=server.url)) as store:
        assert store is not None
        await store.set("kept", {"v": 1})
        await trio.to_thread.run_sync(server.stop)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, server.start)
            with trio.fail_after(15):
                assert await store.get("kept") == {"v": 1}  # retried until Redis came back
        await trio.to_thread.run_sync(server.stop)
        store.retry_window = 0.3
        with pytest.raises(RedisUnavailable, match=r"unreachable for 0\.3 s"):
            await store.get("kept")
