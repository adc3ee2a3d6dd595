"""``run_asyncio``: agent code (on the Trio side) awaits an asyncio-only library.

Where the coroutine runs:

* **hosted from asyncio** (``asyncio.run`` started the mesh): on the host program's own loop,
  so that the library shares that loop's connections, clients and event-loop policy;
* **native Trio**: on an asyncio loop the node owns - one thread running an asyncio loop,
  started on first use and stopped (its leftover tasks cancelled) when the node stops.

Both run the call through an :class:`~._crossing.AsyncioCrossing`: the start reaches the loop
with ``call_soon_threadsafe`` (one wake-up for a burst of calls), the outcome comes back through
an eventfd doorbell on which a waiting Trio task itself sleeps, so neither thread ever touches
the other's objects. Cancellation crosses both ways: cancelling the Trio caller cancels the
asyncio task and waits until it has unwound (its ``finally`` blocks ran); an asyncio task that
ends cancelled (its loop shut down, or the library cancelled itself) raises
:class:`~jarvis_trio.errors.AsyncioCallCancelled` on the Trio side, since a Trio caller must
not see a foreign cancellation exception. Cancelling the asyncio caller of a hosted call
cancels its Trio side (the host's rule), and so the asyncio task.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar

import trio

from .._signals import leave_signals_to_the_main_thread
from ._crossing import AsyncioCrossing

__all__ = [
    "AsyncioPortal",
    "HostLoopPortal",
    "OwnedLoopPortal",
    "current_portal",
    "run_asyncio",
    "use_portal",
]

T = TypeVar("T")


class AsyncioPortal(Protocol):
    """Somewhere asyncio coroutines run for Trio callers."""

    async def run(self, coro: Coroutine[Any, Any, T]) -> T: ...


class HostLoopPortal:
    """The asyncio loop of the program that hosts the mesh (one per loop and host: the
    host closes it when its Trio run has ended)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.crossing = AsyncioCrossing(loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await self.crossing.run(coro)

    def close(self) -> None:
        """Release the crossing's descriptor (the host's Trio run has ended)."""
        self.crossing.close()


class OwnedLoopPortal:
    """An asyncio loop on a thread of its own, for a node run natively under Trio.

    The thread starts on the first :meth:`run`; :meth:`aclose` cancels what still runs on the
    loop, stops it and joins the thread (the node calls it when it stops).
    """

    def __init__(self, name: str = "jarvis-trio-asyncio") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._crossing: AsyncioCrossing | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _ensure_crossing(self) -> AsyncioCrossing:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the node that owned this loop has stopped")
            if self.loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    leave_signals_to_the_main_thread()
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self.loop = loop
                self._crossing = AsyncioCrossing(loop)
            assert self._crossing is not None
            return self._crossing

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            crossing = self._ensure_crossing()
        except BaseException:
            coro.close()
            raise
        return await crossing.run(coro)

    async def aclose(self) -> None:
        """Cancel the loop's remaining tasks, stop it and join its thread."""
        with self._lock:
            self._closed = True
            loop, thread, crossing = self.loop, self._thread, self._crossing
        if loop is None or thread is None or crossing is None:
            await trio.lowlevel.checkpoint()
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()
            crossing.unwatch()  # on the loop's thread, while it still runs

        done = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(done.result)
            loop.call_soon_threadsafe(loop.stop)
            await trio.to_thread.run_sync(thread.join)
            # every call came back cancelled at the latest with the loop's shutdown
            await crossing.wait_idle()
        crossing.close()
        loop.close()


_portal: ContextVar[AsyncioPortal | None] = ContextVar("jarvis_trio_asyncio_portal", default=None)
_run_portal: trio.lowlevel.RunVar[AsyncioPortal | None] = trio.lowlevel.RunVar(
    "jarvis_trio_asyncio_run_portal", default=None
)


def current_portal() -> AsyncioPortal | None:
    """The portal of the calling task: its node's (or its host call's), else the Trio run's."""
    return _portal.get() or _run_portal.get()


def use_portal(portal: AsyncioPortal, *, for_run: bool = False) -> None:
    """Make ``portal`` the calling task's (and its future children's); with ``for_run``,
    also the fallback of the whole Trio run if it has none yet."""
    _portal.set(portal)
    if for_run and _run_portal.get() is None:
        _run_portal.set(portal)


def enter_portal(portal: AsyncioPortal) -> Token[AsyncioPortal | None]:
    """Make ``portal`` the calling task's until :func:`exit_portal` (the host, per call)."""
    return _portal.set(portal)


def exit_portal(token: Token[AsyncioPortal | None]) -> None:
    """Undo :func:`enter_portal`."""
    _portal.reset(token)


def release_run_portal(portal: AsyncioPortal) -> None:
    """Forget ``portal`` as the run's fallback (its node stopped)."""
    if _run_portal.get() is portal:
        _run_portal.set(None)


async def run_asyncio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await ``fn(*args)`` - an asyncio coroutine function - from Trio code, and return its
    result (or raise its exception).

    On the host program's asyncio loop when the mesh is hosted from asyncio, else on the
    asyncio loop the node owns. Cancelling the caller cancels the asyncio task and waits for
    it to unwind; an asyncio task that ends cancelled raises :class:`AsyncioCallCancelled`.
    Outside a running node there is no loop to use: :class:`RuntimeError`.
    """
    portal = current_portal()
    if portal is None:
        raise RuntimeError(
            "run_asyncio() needs a running mesh: call it from agent code, or from Trio code "
            "of a program whose mesh is running"
        )
    coro = fn(*args)
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"run_asyncio() needs an async function, got {fn!r} returning {coro!r}")
    return await portal.run(coro)
