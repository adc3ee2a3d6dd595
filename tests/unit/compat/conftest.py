"""Run coroutines on a real asyncio loop from synchronous tests.

pytest-trio's ``trio_mode`` runs every ``async def`` test under Trio (and turns anyio's asyncio
runs into Trio runs), so the asyncio side of the shim is exercised from plain ``def`` tests
through the ``on_asyncio`` fixture, which proves the loop really is asyncio before running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sniffio

LIMIT = 10.0
"""Upper bound, in seconds, for any one asyncio scenario."""

RunOnAsyncio = Callable[[Callable[[], Awaitable[Any]]], Any]


def _run_on_asyncio(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        assert sniffio.current_async_library() == "asyncio"
        loop = asyncio.get_running_loop()
        assert type(loop).__module__.startswith("asyncio"), type(loop)
        async with asyncio.timeout(LIMIT):
            return await scenario()

    return asyncio.run(main())


@pytest.fixture
def on_asyncio() -> RunOnAsyncio:
    """``on_asyncio(scenario)``: ``asyncio.run`` it, bounded by LIMIT seconds."""
    return _run_on_asyncio
