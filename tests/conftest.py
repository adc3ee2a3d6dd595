"""Shared fixtures: a real ``redis-server`` on a free port.

Without a ``redis-server`` binary the Redis tests are skipped with the reason — except when
the ``CI`` environment variable is set, where a missing server fails them loudly, so a CI
image without Redis cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from jarvis_trio.testing.redis_cluster import (
    RedisClusterServers,
    RedisSentinelServers,
    find_redis_cli,
)
from jarvis_trio.testing.redis_server import RedisServer, find_redis_server
from jarvis_trio.testing.s3_server import MotoS3Server


def _require_redis_server(*, cli: bool = False) -> None:
    if find_redis_server() is not None and (not cli or find_redis_cli() is not None):
        return
    message = "redis-server or redis-cli is not installed (looked in PATH and /usr/bin)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so the Redis tests must run", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One in-memory redis-server shared by the session (tests use distinct keys)."""
    _require_redis_server()
    with RedisServer(persistent=False) as server:
        yield server


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start private servers (``persistent=True`` for restart tests); all closed at the end."""
    _require_redis_server()
    servers: list[RedisServer] = []

    def start(*, persistent: bool = False) -> RedisServer:
        server = RedisServer(persistent=persistent)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One Redis Cluster (3 masters, 3 replicas) shared by the session; never damaged by a
    test (destructive tests start their own)."""
    _require_redis_server(cli=True)
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelServers]:
    """One Sentinel group (1 master, 1 replica, 3 Sentinels) shared by the session; never
    failed over by a test (failover tests start their own)."""
    _require_redis_server(cli=True)
    with RedisSentinelServers() as group:
        yield group


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3Server]:
    """One moto S3 server for the session, with the bucket ``jarvis-test`` (tests use distinct
    prefixes)."""
    with MotoS3Server() as server:
        server.create_bucket("jarvis-test")
        yield server
