"""Helpers for testing systems built on jarvis_trio: real servers on loopback, free ports,
test doubles for agents (:mod:`.doubles`) and the gossip property-testing kit (:mod:`.gossip`).

Each helper's module is imported on first use of its name, so that ``python -m
jarvis_trio.testing.nexus_gateway`` does not import its own module twice and a test that needs
only free ports does not import httpx or redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .doubles import (
        AgentHarness,
        MockBlobStorage,
        MockMailbox,
        MockMesh,
        MockPeerClient,
        NoReplyError,
        agent_under_test,
    )
    from .nexus_gateway import NexusGateway, serve_nexus_gateway
    from .ports import free_port, free_swim_port
    from .redis_cluster import RedisClusterServers, RedisSentinelServers
    from .redis_server import RedisServer
    from .s3_server import MotoS3Server

_DOUBLES = (
    "AgentHarness",
    "MockBlobStorage",
    "MockMailbox",
    "MockMesh",
    "MockPeerClient",
    "NoReplyError",
    "agent_under_test",
)

__all__ = [
    "AgentHarness",
    "MockBlobStorage",
    "MockMailbox",
    "MockMesh",
    "MockPeerClient",
    "MotoS3Server",
    "NexusGateway",
    "NoReplyError",
    "RedisClusterServers",
    "RedisSentinelServers",
    "RedisServer",
    "agent_under_test",
    "free_port",
    "free_swim_port",
    "serve_nexus_gateway",
]


def __getattr__(name: str) -> Any:
    if name in _DOUBLES:
        from . import doubles

        return getattr(doubles, name)
    if name in ("NexusGateway", "serve_nexus_gateway"):
        from . import nexus_gateway

        return getattr(nexus_gateway, name)
    if name == "RedisServer":
        from . import redis_server

        return redis_server.RedisServer
    if name in ("RedisClusterServers", "RedisSentinelServers"):
        from . import redis_cluster

        return getattr(redis_cluster, name)
    if name == "MotoS3Server":
        from . import s3_server

        return s3_server.MotoS3Server
    if name in ("free_port", "free_swim_port"):
        from . import ports

        return getattr(ports, name)
    raise AttributeError(f"module 'jarvis_trio.testing' has no attribute {name!r}")
