"""Shared helper of the transport tests: read a bridge until enough frames have arrived."""

from __future__ import annotations

from jarvis_trio.transport import Bridge


async def collect(bridge: Bridge, count: int) -> list[tuple[str, bytes]]:
    """Receive batches until at least ``count`` (sender, frame) pairs have arrived."""
    got: list[tuple[str, bytes]] = []
    while len(got) < count:
        batch = await bridge.receive()
        assert batch, "bridge closed early"
        got += batch
    return got
