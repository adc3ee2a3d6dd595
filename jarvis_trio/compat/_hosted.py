"""The seam a node crosses when an asyncio program starts or stops it.

``Mesh.start()`` / ``Mesh.stop()`` (and ``async with mesh``) call :func:`start_hosted` /
:func:`stop_hosted` themselves when they are awaited from asyncio; under Trio they never
reach this module. The node hands in its :class:`~jarvis_trio._sides.HostSlot` -- the one it
gave every object it built -- and the Trio-side coroutine to run:

* :func:`start_hosted` takes the loop's :class:`TrioHost` (starting it on first use), puts it
  in the slot (so every ``@trio_side`` method of the node's objects finds it, from any asyncio
  task) and runs the start on it. It registers the node's ``stop()`` as a shutdown hook, so a
  loop that shuts down (end of ``asyncio.run``, Ctrl-C) or an interpreter that exits still
  stops it and runs every ``teardown()``, and it sets
  :data:`~jarvis_trio._sides.current_host` for the calling task.
* :func:`stop_hosted` runs the stop on the host, then gives the host back; the last hosted
  node to stop stops the host's thread. On a node that was never started from asyncio, or
  whose host already stopped it, the stop runs on a runtime borrowed for the call, so it
  behaves as it does under Trio (a no-op, or re-raising what stopped the node).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from .._sides import HostSlot, current_host
from ._host import TrioHost
from ._lifecycle import acquire_host, release_host

__all__ = ["Hostable", "start_hosted", "stop_hosted"]

T = TypeVar("T")


class Hostable(Protocol):
    """A node that can be started from asyncio: its host slot and an idempotent ``stop()``."""

    _host_slot: HostSlot

    async def stop(self) -> None: ...


def _trio_host(slot: HostSlot) -> TrioHost | None:
    host = slot.host
    return host if isinstance(host, TrioHost) else None


async def start_hosted(node: Hostable, start: Callable[[], Awaitable[None]]) -> None:
    """Run ``await start()`` on the loop's Trio host and leave the node hosted there."""
    slot = node._host_slot
    host = _trio_host(slot)
    if host is not None and host.running and slot.leased:
        # hosted already: the node's own start decides (starting twice is its error to raise)
        await host.call(start)
        return
    host = await acquire_host()
    slot.host = host  # visible to the start itself, which builds the node's objects
    slot.leased = True
    try:
        await host.call(start)
    except BaseException:
        slot.host = None
        slot.leased = False
        await release_host(host)
        raise
    host.add_shutdown_hook(node, node.stop)
    current_host.set(host)


async def stop_hosted(node: Hostable, stop: Callable[[], Awaitable[T]]) -> T:
    """Run ``await stop()`` on the node's host, then give the host back."""
    slot = node._host_slot
    host = _trio_host(slot)
    if host is None or not host.running:
        # never started from asyncio, or stopped already with its host: the node's own stop
        # still decides what that means, exactly as under Trio, on a borrowed runtime
        borrowed = await acquire_host()
        try:
            return await borrowed.call(stop)
        finally:
            await release_host(borrowed)
    if not slot.leased:
        # stopped already while other nodes keep the host running (a second stop: a no-op)
        return await host.call(stop)
    stopped = False
    try:
        result = await host.call(stop)
        stopped = True
    finally:
        if stopped:
            host.remove_shutdown_hook(node)  # otherwise the host retries it as it stops
        slot.leased = False
        await release_host(host)
        if host.stopped and current_host.get() is host:
            # the node's objects name their host through the slot; a new node of this task
            # must not find a dead host before its own start()
            current_host.set(None)
    return result
