"""Decorators that let a runtime object (the Mesh) be started and stopped from asyncio.

The whole integration is one class decorator, :func:`asyncio_hostable`, on ``Mesh``. It puts
``@hosted_start`` on ``start`` and ``@hosted_stop`` on ``stop``, routes ``async with`` from
asyncio through them (a Trio nursery cannot be opened in one crossing and closed in another),
and makes ``add`` run on the Trio thread once the mesh runs. Awaited from Trio, every wrapper
runs the original directly. Awaited from asyncio:

* ``hosted_start`` takes the loop's :class:`TrioHost` (starting it on first use), runs the
  real method on it, then marks the object and everything it injected into its agents with
  ``_runtime_host`` (so their ``@trio_side`` methods find the host from any asyncio task) and
  sets :data:`~jarvis_trio._sides.current_host` for the calling task. It registers the
  object's ``stop()`` as a shutdown hook, so a loop that shuts down (end of ``asyncio.run``,
  Ctrl-C) or an interpreter that exits still stops it and runs every ``teardown()``.
* ``hosted_stop`` runs the real method on the host, then gives the host back; the last hosted
  object to stop stops the host's thread. On an object that was never started from asyncio,
  or whose host already stopped it, the real method runs on a runtime borrowed for the call,
  so it behaves as it does under Trio (typically a no-op, or re-raising what stopped it).

The decorated object must accept a ``_runtime_host`` attribute and have an idempotent async
``stop()``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from .._sides import current_host, on_trio
from ._host import TrioHost
from ._lifecycle import acquire_host, release_host

__all__ = ["INJECTED_ATTRIBUTES", "adopt", "asyncio_hostable", "hosted_start", "hosted_stop"]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")

INJECTED_ATTRIBUTES = ("peers", "mailbox", "_blob_storage", "_redis_store", "_auth_manager")
"""The objects a mesh injects into each agent, which :func:`adopt` marks as well."""


def _mark(obj: object, host: TrioHost | None) -> None:
    if obj is None:
        return
    # A slotted or frozen object is found through current_host instead.
    with contextlib.suppress(AttributeError, TypeError):
        object.__setattr__(obj, "_runtime_host", host)


def _set_lease(obj: object, held: bool) -> None:
    """Whether ``obj`` holds one use of its host (taken by start, given back by stop)."""
    object.__setattr__(obj, "_runtime_host_lease", held)


def _holds_lease(obj: object) -> bool:
    return bool(getattr(obj, "_runtime_host_lease", False))


def _agents_of(mesh: object) -> Iterable[object]:
    agents = getattr(mesh, "agents", None)
    if isinstance(agents, Mapping):
        return list(agents.values())
    if isinstance(agents, Iterable) and not isinstance(agents, str | bytes):
        return list(agents)
    return ()


def adopt(mesh: object, host: TrioHost | None) -> None:
    """Mark ``mesh``, its agents and what they were injected with as served by ``host``.

    Agents are found in ``mesh.agents`` (a sequence, or a mapping of id to agent). Call it on
    the Trio thread, after the agents were injected (it is also safe to call again after
    ``add()``)."""
    _mark(mesh, host)
    for agent in _agents_of(mesh):
        _adopt_agent(agent, host)


async def _start_then_adopt(
    method: Callable[..., Awaitable[T]],
    obj: object,
    host: TrioHost,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    result = await method(obj, *args, **kwargs)
    adopt(obj, host)
    return result


async def _stop_at_shutdown(obj: object) -> None:
    stop: Callable[[], Awaitable[object]] | None = getattr(obj, "stop", None)
    if stop is not None:
        await stop()


def hosted_start(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Decorate the method that starts a runtime object; see the module docstring."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if on_trio():
            return await method(self, *args, **kwargs)
        host: TrioHost | None = getattr(self, "_runtime_host", None)
        if host is not None and host.running and _holds_lease(self):
            # Already hosted: the real method decides (starting twice is its error to raise).
            return await host.call(method, self, *args, **kwargs)
        host = await acquire_host()
        _mark(self, host)  # visible to the real method, which may pass it on while injecting
        _set_lease(self, True)
        try:
            result: T = await host.call(_start_then_adopt, method, self, host, args, kwargs)
        except BaseException:
            _mark(self, None)
            _set_lease(self, False)
            await release_host(host)
            raise
        host.add_shutdown_hook(self, functools.partial(_stop_at_shutdown, self))
        current_host.set(host)
        return result

    return wrapper


def hosted_stop(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T | None]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T | None]]:
    """Decorate the method that stops a runtime object; see the module docstring."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T | None:
        if on_trio():
            return await method(self, *args, **kwargs)
        host: TrioHost | None = getattr(self, "_runtime_host", None)
        if host is None or not host.running:
            # Never started from asyncio, or already stopped with its host: the real method
            # still decides what that means (a no-op, or re-raising what stopped the object),
            # exactly as under Trio, on a runtime borrowed for the call.
            borrowed = await acquire_host()
            try:
                return await borrowed.call(method, self, *args, **kwargs)
            finally:
                await release_host(borrowed)
        if not _holds_lease(self):
            # Stopped already while other objects keep the host running: the real method
            # decides (stopping twice is a no-op).
            return await host.call(method, self, *args, **kwargs)
        stopped = False
        try:
            result = await host.call(method, self, *args, **kwargs)
            stopped = True
        finally:
            if stopped:
                host.remove_shutdown_hook(self)  # otherwise the host retries it as it stops
            _set_lease(self, False)
            await release_host(host)
            if host.stopped and current_host.get() is host:
                # Objects hosted there say so themselves (their _runtime_host); a new mesh of
                # this task must not find a dead host before its own start().
                current_host.set(None)
        return result

    return wrapper


def _adopt_agent(agent: object, host: TrioHost | None) -> None:
    if host is None:
        return
    _mark(agent, host)
    for name in INJECTED_ATTRIBUTES:
        try:
            _mark(getattr(agent, name, None), host)
        except Exception:  # a property refusing access (agent not fully injected yet)
            continue


def _is_hosted(fn: object) -> bool:
    return bool(getattr(fn, "__jarvis_hosted__", False))


def _tagged(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn.__jarvis_hosted__ = True  # type: ignore[attr-defined]
    return fn


def asyncio_hostable(cls: type[S]) -> type[S]:
    """Class decorator: make a Mesh-like class usable from asyncio as well as Trio.

    Wraps, when the class defines them:

    * ``start`` with :func:`hosted_start` and ``stop`` with :func:`hosted_stop`;
    * ``__aenter__`` / ``__aexit__`` so that from asyncio they run ``start()`` / ``stop()``
      (a Trio nursery cannot be entered in one host call and left in another); from Trio they
      are unchanged;
    * ``add`` with :func:`~jarvis_trio._sides.trio_side_sync` (after start it runs on the
      Trio thread) and ``add`` / ``start_agent`` so the agent they return is marked with the
      host like those present at start.

    Idempotent; every wrapper is transparent for callers on Trio.
    """
    from .._sides import trio_side, trio_side_sync

    namespace = vars(cls)
    if "start" in namespace and not _is_hosted(namespace["start"]):
        cls.start = _tagged(hosted_start(namespace["start"]))  # type: ignore[attr-defined]
    if "stop" in namespace and not _is_hosted(namespace["stop"]):
        cls.stop = _tagged(hosted_stop(namespace["stop"]))  # type: ignore[attr-defined]

    enter = namespace.get("__aenter__")
    if enter is not None and not _is_hosted(enter):

        @functools.wraps(enter)
        async def __aenter__(self: Any) -> Any:
            if on_trio():
                return await enter(self)
            await self.start()
            return self

        cls.__aenter__ = _tagged(__aenter__)  # type: ignore[attr-defined]

    leave = namespace.get("__aexit__")
    if leave is not None and not _is_hosted(leave):

        @functools.wraps(leave)
        async def __aexit__(self: Any, *exc_info: Any) -> Any:
            if on_trio():
                return await leave(self, *exc_info)
            await self.stop()
            return False

        cls.__aexit__ = _tagged(__aexit__)  # type: ignore[attr-defined]

    add = namespace.get("add")
    if add is not None and not _is_hosted(add):

        @functools.wraps(add)
        def add_then_adopt(self: Any, *args: Any, **kwargs: Any) -> Any:
            agent = add(self, *args, **kwargs)
            _adopt_agent(agent, getattr(self, "_runtime_host", None))
            return agent

        cls.add = _tagged(trio_side_sync(add_then_adopt))  # type: ignore[attr-defined]

    start_agent = namespace.get("start_agent")
    if start_agent is not None and not _is_hosted(start_agent):

        @functools.wraps(start_agent)
        async def start_agent_then_adopt(self: Any, *args: Any, **kwargs: Any) -> Any:
            agent = await start_agent(self, *args, **kwargs)
            _adopt_agent(agent, getattr(self, "_runtime_host", None))
            return agent

        cls.start_agent = _tagged(trio_side(start_agent_then_adopt))  # type: ignore[attr-defined]

    return cls
