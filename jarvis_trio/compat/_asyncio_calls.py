"""``run_asyncio``: agent code (on the Trio side) awaits an asyncio-only library.

Where the coroutine runs:

* **hosted from asyncio** (``asyncio.run`` started the mesh): on the host program's own loop,
  so that the library shares that loop's connections, clients and event-loop policy;
* **native Trio**: on an asyncio loop the node owns - one thread running an asyncio loop,
  started on first use and stopped (its leftover tasks cancelled) when the node stops.

The Trio side waits on a :class:`trio.Event` set through the Trio token when the asyncio task
finishes, so neither thread ever touches the other's objects directly. Cancellation crosses
both ways: cancelling the Trio caller cancels the asyncio task and waits until it has unwound
(its ``finally`` blocks ran); an asyncio task that ends cancelled (its loop shut down, or the
library cancelled itself) raises :class:`~jarvis_trio.errors.AsyncioCallCancelled` on the Trio
side, since a Trio caller must not see a foreign cancellation exception. Cancelling the asyncio
caller of a hosted call cancels its Trio side (the host's rule), and so the asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar, cast

import trio

from ..errors import AsyncioCallCancelled

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


async def _run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` as a task of ``loop`` (another thread's) and wait for it from Trio.

    The asyncio side is touched only through ``loop.call_soon_threadsafe``; the task's outcome
    is copied into a plain list on the asyncio thread and read here after the Trio token said
    it is there. On cancellation the task is cancelled and waited for (shielded) until it has
    unwound, so no asyncio work outlives its Trio caller.
    """
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    tasks: list[asyncio.Task[T]] = []
    result: list[tuple[str, Any]] = []
    what = getattr(coro, "__qualname__", repr(coro))

    def finished(task: asyncio.Task[T]) -> None:  # asyncio thread
        if task.cancelled():
            result.append(("cancelled", None))
        elif task.exception() is not None:
            result.append(("error", task.exception()))
        else:
            result.append(("value", task.result()))
        with contextlib.suppress(trio.RunFinishedError):  # nobody waits any more
            token.run_sync_soon(done.set)

    def start() -> None:  # asyncio thread
        task = loop.create_task(coro)
        tasks.append(task)
        task.add_done_callback(finished)

    def cancel() -> None:  # asyncio thread; runs after start() (FIFO)
        if tasks:
            tasks[0].cancel()

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop is closed
        coro.close()
        raise
    try:
        await done.wait()
    except BaseException:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(cancel)
        with trio.CancelScope(shield=True):
            await done.wait()
        raise
    kind, value = result[0]
    if kind == "value":
        return cast(T, value)
    if kind == "error":
        raise value
    raise AsyncioCallCancelled(f"{what} was cancelled on the asyncio side")


class HostLoopPortal:
    """The asyncio loop of the program that hosts the mesh."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await _run_on(self.loop, coro)


class OwnedLoopPortal:
    """An asyncio loop on a thread of its own, for a node run natively under Trio.

    The thread starts on the first :meth:`run`; :meth:`aclose` cancels what still runs on the
    loop, stops it and joins the thread (the node calls it when it stops).
    """

    def __init__(self, name: str = "jarvis-trio-asyncio") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the node that owned this loop has stopped")
            if self.loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self.loop = loop
            return self.loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            loop = self._ensure_loop()
        except BaseException:
            coro.close()
            raise
        return await _run_on(loop, coro)

    async def aclose(self) -> None:
        """Cancel the loop's remaining tasks, stop it and join its thread."""
        with self._lock:
            self._closed = True
            loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            await trio.lowlevel.checkpoint()
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        done = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(done.result)
            loop.call_soon_threadsafe(loop.stop)
            await trio.to_thread.run_sync(thread.join)
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
