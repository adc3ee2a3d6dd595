"""Clear errors for asyncio-only code that runs inside the Trio runtime.

Agent code (``setup``/``run``/``teardown``, handlers, and everything a mesh runs for an asyncio
program) executes on Trio. asyncio primitives cannot work there; left alone they fail with
messages that do not say why (``no running event loop``, ``'NoneType' object has no attribute
'create_future'``, or Trio's ``unrecognized yield message``).

Two mechanisms turn those into :class:`~jarvis_trio.errors.AsyncioMisuseError` naming what to
use instead:

* :func:`asyncio_guard` installs, on the runtime thread, a stand-in "running loop" whose every
  use raises the explanatory error at the offending call site (``asyncio.sleep``, ``Queue.get``,
  ``Event.wait``, ``create_task``, ``gather``, ``to_thread``, ``timeout`` ...). It is meant for
  a thread the runtime owns (the :class:`~jarvis_trio.compat.TrioHost` thread), because the
  stand-in makes ``asyncio.run`` refuse to start on that thread while it is installed.
* :func:`explain_asyncio_misuse` / :func:`asyncio_misuse_explained` recognise the raw failures
  after the fact, for code that runs under a plain ``trio.run`` where no stand-in is installed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, cast

from ..errors import AsyncioMisuseError

__all__ = ["asyncio_guard", "asyncio_misuse_explained", "explain_asyncio_misuse"]

_USE_INSTEAD = (
    "Use anyio (anyio.sleep, anyio.Event, anyio.Lock, anyio.create_memory_object_stream, "
    "anyio.create_task_group, anyio.fail_after, anyio.to_thread.run_sync) or the Trio "
    "equivalents (trio.sleep, trio.Event, trio.open_memory_channel, trio.open_nursery, "
    "trio.fail_after, trio.to_thread.run_sync)."
)

# What the loop method tells about the asyncio call that needed it.
_WHAT: dict[str, str] = {
    "create_future": "awaiting an asyncio primitive (asyncio.sleep, asyncio.Future, "
    "asyncio.Event.wait, asyncio.Queue.get/put, a contended asyncio.Lock, ...)",
    "create_task": "starting an asyncio task (asyncio.create_task, asyncio.gather, "
    "asyncio.ensure_future, asyncio.wait_for)",
    "run_in_executor": "asyncio.to_thread / loop.run_in_executor",
    "call_soon": "scheduling an asyncio callback",
    "call_later": "scheduling an asyncio timer",
    "call_at": "scheduling an asyncio timer",
    "time": "reading the asyncio loop clock (asyncio.timeout, loop.time)",
    "get_debug": "creating an asyncio.Future",
}


def _misuse(what: str) -> AsyncioMisuseError:
    return AsyncioMisuseError(
        f"asyncio was used inside the Trio runtime ({what}). Agent code and everything the "
        f"mesh runs on your behalf execute on Trio, where asyncio primitives cannot work. "
        f"{_USE_INSTEAD}"
    )


class _TrioSideLoop:
    """Stands in for "the running asyncio loop" on the runtime thread; any use explains.

    asyncio finds the running loop through a thread-local slot. With this object there,
    ``asyncio.get_running_loop()`` succeeds, and the first thing asyncio does with the loop
    (``create_future``, ``create_task``, ...) raises :class:`AsyncioMisuseError` right where
    the user's code made the call. Probes that only look the loop up stay quiet:
    ``asyncio.current_task()`` answers ``None`` (there is no asyncio task here), so libraries
    that ask which task is running (``logging`` on Python 3.12+) keep working.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> NoReturn:
        raise _misuse(_WHAT.get(name, f"the asyncio event loop's {name}"))

    def __repr__(self) -> str:
        return "<Trio runtime: no asyncio event loop here>"


_STAND_IN = _TrioSideLoop()
_depth = threading.local()


@contextmanager
def asyncio_guard() -> Iterator[None]:
    """Within the block, asyncio use on this thread raises :class:`AsyncioMisuseError`.

    Re-entrant (a per-thread count). A thread that already runs a real asyncio loop (Trio in
    guest mode) is left untouched.
    """
    current: object = asyncio._get_running_loop()
    if current is not None and current is not _STAND_IN:
        yield
        return
    depth: int = getattr(_depth, "value", 0)
    if depth == 0:
        asyncio._set_running_loop(cast(asyncio.AbstractEventLoop, _STAND_IN))
    _depth.value = depth + 1
    try:
        yield
    finally:
        _depth.value -= 1
        running: object = asyncio._get_running_loop()
        if _depth.value == 0 and running is _STAND_IN:
            asyncio._set_running_loop(None)


_RAW_SIGNS = (
    "no running event loop",  # asyncio.get_running_loop() / asyncio.sleep() with no loop
    "There is no current event loop",  # asyncio.get_event_loop() in a non-main thread
    "unrecognized yield message",  # Trio was handed an asyncio future or a bare yield
    "object has no attribute 'create_future'",  # asyncio.Queue/Event bound to no loop
)


def explain_asyncio_misuse(exc: BaseException) -> AsyncioMisuseError | None:
    """The explanatory error for a raw failure caused by asyncio code running on Trio, or
    ``None`` when ``exc`` is something else."""
    if isinstance(exc, AsyncioMisuseError):
        return None
    if not isinstance(exc, RuntimeError | TypeError | AttributeError):
        return None
    text = str(exc)
    for sign in _RAW_SIGNS:
        if sign in text:
            return _misuse(f"{type(exc).__name__}: {text}")
    return None


@contextmanager
def asyncio_misuse_explained() -> Iterator[None]:
    """Re-raise raw asyncio-on-Trio failures from the block as :class:`AsyncioMisuseError`
    (chained to the original); any other exception passes through untouched."""
    try:
        yield
    except (RuntimeError, TypeError, AttributeError) as exc:
        explained = explain_asyncio_misuse(exc)
        if explained is None:
            raise
        raise explained from exc
