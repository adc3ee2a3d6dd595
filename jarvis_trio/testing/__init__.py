"""Helpers for testing systems built on jarvis_trio: real servers on loopback, free ports.

Imported lazily, so that ``python -m jarvis_trio.testing.nexus_gateway`` does not import its
own module twice and a test that needs only free ports does not import httpx or redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .nexus_gateway import NexusGateway, serve_nexus_gateway
    from .ports import free_port, free_swim_port
    from .redis_server import RedisServer

__all__ = ["NexusGateway", "RedisServer", "free_port", "free_swim_port", "serve_nexus_gateway"]

_HOMES = {
    "NexusGateway": "nexus_gateway",
    "serve_nexus_gateway": "nexus_gateway",
    "RedisServer": "redis_server",
    "free_port": "ports",
    "free_swim_port": "ports",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jarvis_trio.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
