"""Which side of the asyncio/Trio boundary a call is made from, and how it crosses.

The runtime lives on Trio. Its public async methods (PeerClient, Mesh, mailbox, blob
storage, auth) are decorated with :func:`trio_side`: awaited from Trio they run directly, at
no cost beyond one ``sniffio`` look-up; awaited from an asyncio program they are forwarded to
the Trio runtime that hosts the mesh (see :mod:`jarvis_trio.compat`), so that no asyncio object
is touched from the Trio thread nor the reverse.

The host is found first on the object (``_runtime_host``, set when the object is created by a
mesh that is hosted from asyncio), then in a context variable set by the host for the asyncio
task that started it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import sniffio

from .errors import AsyncioMisuseError

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")


class RuntimeHost(Protocol):
    """Something that runs a Trio coroutine function on its Trio thread and awaits the
    result from the calling (foreign) event loop, propagating cancellation both ways."""

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T: ...


current_host: ContextVar[RuntimeHost | None] = ContextVar("jarvis_trio_runtime_host", default=None)


def _host_for(obj: object) -> RuntimeHost | None:
    host: RuntimeHost | None = getattr(obj, "_runtime_host", None)
    return host if host is not None else current_host.get()


def on_trio() -> bool:
    """True when the caller runs inside a Trio task."""
    try:
        return sniffio.current_async_library() == "trio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


def trio_side(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Make an async method of a runtime object callable from Trio and from asyncio."""

    async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        if on_trio():
            return await method(self, *args, **kwargs)
        host = _host_for(self)
        if host is None:
            raise AsyncioMisuseError(
                f"{type(self).__name__}.{method.__name__}() was awaited outside Trio with no "
                "runtime host: from asyncio, create the mesh with jarvis_trio.compat "
                "(Mesh.start() there hosts the Trio runtime), or run your program with trio.run"
            )
        return await host.call(method, self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper
