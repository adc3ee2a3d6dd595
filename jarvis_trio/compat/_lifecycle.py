"""Which TrioHost serves an asyncio loop, and when it stops.

One asyncio event loop gets one :class:`TrioHost`, shared by every mesh hosted from that loop:
the first hosted ``Mesh.start()`` starts it, the last hosted ``Mesh.stop()`` stops it.

Two safety nets make sure the Trio side always gets to stop (running every hosted mesh's
``stop()``, hence every agent's ``teardown()``):

* a guard task on the asyncio loop. ``asyncio.run`` cancels the tasks still pending when the
  main coroutine ends, returns early on an exception, or is interrupted with Ctrl-C; the guard,
  cancelled then, stops the host and waits for it before the loop closes — at most
  :data:`SHUTDOWN_TIMEOUT` + :data:`EXIT_TIMEOUT` seconds, so a runtime wedged by blocking code
  cannot hang ``asyncio.run``;
* an interpreter-exit hook for hosts whose loop was never shut down that way. It runs before
  Python joins its non-daemon threads, stops each live host, and waits for each at most
  :data:`EXIT_TIMEOUT` seconds; the runtime thread is a daemon, so exit never hangs on it.

For Ctrl-C to get that far, its handler has to run: while a loop on the main thread hosts a
runtime, every signal wakes that loop (:mod:`._signal_wakeup`), from before the runtime thread
starts until it has stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import weakref
from dataclasses import dataclass, field

from ._host import TrioHost
from ._signal_wakeup import stop_waking_loop, wake_loop_on_signals

__all__ = ["EXIT_TIMEOUT", "SHUTDOWN_TIMEOUT", "acquire_host", "host_of_loop", "release_host"]

log = logging.getLogger("jarvis_trio.compat")

SHUTDOWN_TIMEOUT = 10.0
"""Seconds each hosted mesh's ``stop()`` may take when its host stops (``shutdown_timeout``
of the hosts made here)."""

EXIT_TIMEOUT = 5.0
"""Seconds interpreter exit waits for each runtime still running (its meshes' shutdown)."""


@dataclass(eq=False)
class _Lease:
    host: TrioHost
    users: int = 0
    ready: asyncio.Future[None] | None = None
    # Held here because asyncio keeps only weak references to running tasks.
    guard: asyncio.Task[None] | None = field(default=None, repr=False)


# Each entry is touched only by the thread running its loop.
_leases: dict[asyncio.AbstractEventLoop, _Lease] = {}
_live_hosts: weakref.WeakSet[TrioHost] = weakref.WeakSet()
_exit_hook_lock = threading.Lock()
_exit_hook_installed = False


def host_of_loop(loop: asyncio.AbstractEventLoop) -> TrioHost | None:
    """The running host serving ``loop``, if any."""
    lease = _leases.get(loop)
    return lease.host if lease is not None and lease.host.running else None


async def acquire_host() -> TrioHost:
    """The running loop's host, started on first use; pair with :func:`release_host`."""
    loop = asyncio.get_running_loop()
    lease = _leases.get(loop)
    if lease is not None and lease.ready is not None:
        await asyncio.shield(lease.ready)  # another caller is starting it
    if lease is not None and lease.host.running and _leases.get(loop) is lease:
        lease.users += 1
        return lease.host
    host = TrioHost(shutdown_timeout=SHUTDOWN_TIMEOUT)
    ready: asyncio.Future[None] = loop.create_future()
    lease = _Lease(host, ready=ready)
    _leases[loop] = lease
    # before the runtime thread exists: from now on a Ctrl-C must reach this loop
    wake_loop_on_signals(loop, lease)
    try:
        await host.start()
    except BaseException as exc:
        if _leases.get(loop) is lease:
            del _leases[loop]
        stop_waking_loop(lease)
        if isinstance(exc, Exception):
            ready.set_exception(exc)
            ready.exception()  # retrieved: concurrent starters see it, no warning
        else:
            ready.cancel()
        raise
    ready.set_result(None)
    lease.ready = None
    lease.users += 1
    lease.guard = loop.create_task(_guard(loop, lease), name=f"guard of {host.name}")
    _live_hosts.add(host)
    _install_exit_hook()
    return host


async def release_host(host: TrioHost) -> None:
    """Give back one use of ``host``; the last one stops it (shutdown hooks first)."""
    loop = asyncio.get_running_loop()
    lease = _leases.get(loop)
    if lease is None or lease.host is not host:
        await host.aclose()  # already orphaned (its guard stopped it): just make sure
        return
    lease.users -= 1
    if lease.users > 0:
        return
    del _leases[loop]
    try:
        await host.aclose()
    finally:
        stop_waking_loop(lease)


async def _guard(loop: asyncio.AbstractEventLoop, lease: _Lease) -> None:
    """Lives as long as the host; when the loop shuts down first, stops the host."""
    try:
        await lease.host.wait_stopped()
    except asyncio.CancelledError:
        if _leases.get(loop) is lease:
            del _leases[loop]
        if not lease.host.stopped:
            await _stop_bounded(lease.host)
        raise
    finally:
        stop_waking_loop(lease)  # once the runtime has stopped (or been abandoned)


async def _stop_bounded(host: TrioHost) -> None:
    log.info("the asyncio loop is shutting down: stopping %s", host.name)
    bound = host.shutdown_timeout + EXIT_TIMEOUT
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(bound):
            await host.aclose()
    if not host.stopped:
        log.error("%s did not stop within %.1f s; abandoning it", host.name, bound)


def _install_exit_hook() -> None:
    global _exit_hook_installed
    with _exit_hook_lock:
        if _exit_hook_installed:
            return
        # threading's own exit hooks run before non-daemon threads are joined, so a mesh that
        # owns such threads is stopped before Python waits for them; atexit as a fallback.
        _exit_hook_installed = True
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            try:
                register(_stop_live_hosts)
            except RuntimeError:  # the interpreter is already shutting down
                pass
            else:
                return
        atexit.register(_stop_live_hosts)


def _stop_live_hosts() -> None:
    stop_waking_loop()  # from the main thread (where Python exits): no loop runs any more
    for host in list(_live_hosts):
        if host.stopped:
            continue
        log.info("interpreter exit: stopping %s", host.name)
        if not host.close_blocking(EXIT_TIMEOUT):
            log.error(
                "%s did not stop within %.1f s at interpreter exit; abandoning it",
                host.name,
                EXIT_TIMEOUT,
            )
