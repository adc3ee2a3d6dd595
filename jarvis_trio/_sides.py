"""Which side of the asyncio/Trio boundary a call is made from, and how it crosses.

The runtime lives on Trio. Its public async methods (PeerClient, Mesh, mailbox, blob
storage, auth) are decorated with :func:`trio_side`: awaited from Trio they run directly, at
the cost of one thread-local read (the library name ``trio.run`` sets for ``sniffio``); awaited
from an asyncio program they are forwarded to the Trio runtime that hosts the mesh (see
:mod:`jarvis_trio.compat`), so that no asyncio object is touched from the Trio thread nor the
reverse.

Synchronous methods that touch Trio state (``Mesh.add`` after start, for instance) use
:func:`trio_side_sync`: called from a thread other than the host's, they run on the Trio thread
and the caller blocks for that one short hop.

Which host serves an object is explicit: every object with ``@trio_side`` methods is handed a
:class:`HostSlot` when it is built (``host=`` of its constructor; a mesh hands the same slot to
everything it builds for its node). The slot is empty under Trio; ``Mesh.start()`` awaited from
asyncio fills it with the loop's host (:func:`jarvis_trio.compat.start_hosted`), so every
object of that node finds the host from any asyncio task. An object built without a slot (a
``BlobStorage`` made by hand, say) finds the host in a context variable set for the asyncio
task that started it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import sniffio
from sniffio import thread_local as _sniffio_thread

from .errors import AsyncioMisuseError

__all__ = [
    "HostSlot",
    "RuntimeHost",
    "Started",
    "crossing",
    "current_host",
    "on_trio",
    "trio_side",
    "trio_side_sync",
]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")


class Started(Protocol):
    """Work started on the Trio side with no task of its own (see
    :meth:`RuntimeHost.call_by_callback`)."""

    def cancel(self) -> None:
        """Stop it; its ``done`` callback is not called afterwards."""


class RuntimeHost(Protocol):
    """Something that runs Trio code on its own Trio thread for callers on other threads."""

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``await fn(*args, **kwargs)`` on the Trio thread and await the outcome from the
        calling (asyncio) event loop, propagating cancellation both ways."""

    async def call_by_callback(
        self,
        start: Callable[..., Started | None],
        fn: Callable[..., Awaitable[T]],
        *args: Any,
    ) -> T:
        """Like ``call(fn, *args)``, for work the Trio side can start without a task of its
        own: ``start(*args, done)`` runs there and either returns the started work, its
        outcome reaching ``done(value)`` once, or returns ``None`` (nothing started): then
        ``await fn(*args)`` runs as with :meth:`call`."""

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the Trio thread, blocking the calling thread until it returns
        (``fn`` runs directly when already on the Trio thread)."""

    def in_host_thread(self) -> bool:
        """True when called from the host's Trio thread."""


current_host: ContextVar[RuntimeHost | None] = ContextVar("jarvis_trio_runtime_host", default=None)


class HostSlot:
    """The runtime host serving one node's objects, shared by all of them.

    ``host`` is ``None`` under Trio and for a node not started from asyncio; it keeps naming a
    host that stopped, so that a call made after the stop says so
    (:class:`~jarvis_trio.errors.HostStopped`) instead of blaming the caller. ``leased`` is
    true while the node holds one use of that host (from its hosted start to its hosted stop).
    """

    __slots__ = ("host", "leased")

    def __init__(self) -> None:
        self.host: RuntimeHost | None = None
        self.leased = False

    def __repr__(self) -> str:
        return f"<HostSlot {self.host!r}{' leased' if self.leased else ''}>"


def _host_for(obj: object) -> RuntimeHost | None:
    slot: HostSlot | None = getattr(obj, "_host_slot", None)
    host = None if slot is None else slot.host
    return host if host is not None else current_host.get()


def on_trio() -> bool:
    """True when the caller runs inside a Trio task."""
    if _sniffio_thread.name == "trio":  # what trio.run sets on its thread: the fast answer
        return True
    try:
        return sniffio.current_async_library() == "trio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def trio_side(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Make an async method of a runtime object callable from Trio and from asyncio."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if _sniffio_thread.name != "trio":  # on a Trio thread (the common case): one read
            host = crossing(self, method.__name__)
            if host is not None:
                return await host.call(method, self, *args, **kwargs)
        return await method(self, *args, **kwargs)

    return wrapper


def crossing(obj: object, name: str) -> RuntimeHost | None:
    """Off a Trio thread, where a call to ``obj.name()`` must run: the host whose Trio thread
    runs it, or ``None`` when it may run right here (on the host's own thread, or in Trio
    without the thread-local mark -- guest mode); raises
    :class:`~jarvis_trio.errors.AsyncioMisuseError` from asyncio with no host.

    What :func:`trio_side` does off the fast path; a method on the hottest path may make the
    same check inline (``if sniffio.thread_local.name != "trio": host = crossing(...)``) to
    spare its callers the wrapper's coroutine."""
    host = _host_for(obj)
    if host is not None:
        return None if host.in_host_thread() else host
    if on_trio():
        return None
    raise AsyncioMisuseError(
        f"{type(obj).__name__}.{name}() was awaited outside Trio with no "
        "runtime host: from asyncio, start the mesh first (await mesh.start() or "
        "async with mesh hosts the Trio runtime), or run your program with trio.run"
    )


def trio_side_sync(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Make a synchronous method that touches Trio state safe to call from asyncio.

    With no host (a plain Trio program, or an object not hosted yet) or on the host's own
    thread, the method runs directly. From any other thread it runs on the Trio thread and the
    caller blocks until it returns, so keep such methods short and non-blocking. Keyword
    arguments are passed through.
    """

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if _sniffio_thread.name == "trio":
            return method(self, *args, **kwargs)
        host = _host_for(self)
        if host is None or host.in_host_thread():
            return method(self, *args, **kwargs)
        return host.run_sync(functools.partial(method, self, *args, **kwargs))

    return wrapper
