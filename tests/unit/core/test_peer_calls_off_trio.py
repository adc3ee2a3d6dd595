"""``request`` and ``notify`` check their side of the asyncio/Trio boundary inline (what
``@trio_side`` does, without its coroutine): awaited from asyncio with no runtime host they
say how to get one, as every other runtime method does."""

from __future__ import annotations

import asyncio

import pytest

from jarvis_trio.bench.questions._agents import Caller
from jarvis_trio.errors import AsyncioMisuseError
from jarvis_trio.mesh import Mesh


def test_request_and_notify_from_asyncio_without_a_host_say_how_to_get_one() -> None:
    mesh = Mesh({"node_name": "unstarted"}, env_file=None, environ={})
    peers = mesh.add(Caller).peers

    async def scenario() -> None:
        with pytest.raises(AsyncioMisuseError, match=r"PeerClient\.request\(\).*mesh\.start"):
            await peers.request("echo", {"n": 1})
        with pytest.raises(AsyncioMisuseError, match=r"PeerClient\.notify\(\).*mesh\.start"):
            await peers.notify("echo", {"n": 1})

    asyncio.run(scenario())
