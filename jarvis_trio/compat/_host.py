"""TrioHost: the Trio runtime on one dedicated thread, called from asyncio.

An asyncio program cannot run Trio code on its own loop, so the mesh runs on a Trio thread and
every call crosses one boundary. Each asyncio loop that calls in gets a *lane* carrying both
directions:

* asyncio → Trio: a call is appended to the lane's inbox under a lock. The first call into an
  empty inbox rings the host's *doorbell* (an ``eventfd``; with other calls in flight, at the
  end of the current loop iteration, so that one ring carries them all). On the Trio side one
  of the pooled worker tasks, the *leader*, waits on the doorbell's descriptor with
  ``trio.lowlevel.wait_readable``; woken, it takes every posted call, hands all but the first
  to other workers, passes the leadership on, and runs the first call itself in the same
  scheduling batch. Ringing never blocks, so the asyncio loop never stalls. (Measured on the
  2-core development VM, a no-op call: 74 µs round trip through ``TrioToken.run_sync_soon``
  and a parked worker, which cost a detour through Trio's entry-queue task and one more
  scheduling batch; see ``benchmarks/README.md`` for the figures through the doorbell.)
* Trio → asyncio: finished calls are collected on the Trio thread and handed over once per Trio
  scheduling batch (a Trio instrument's ``before_io_wait``, just before Trio looks for I/O),
  with one ``loop.call_soon_threadsafe`` per lane that resolves the asyncio futures. A call by
  callback that ends with nothing else in flight is handed over at once instead: the asyncio
  thread's wake-up then overlaps the rest of the Trio batch (a sequential request's p50 gap
  over native Trio was smaller in 8 of 9 alternated pairs, by 0.1 to 1.3 bare round trips).

Batching both ways matters beyond saving syscalls: every wake-up write releases the GIL, and a
thread that gives the other one the GIL on every call makes both crawl.

Workers: a call runs in a pooled worker task rather than a task of its own (spawning a task
and entering a cancel scope per call cost more than the request being forwarded). A worker
keeps one cancel scope until a call is cancelled through it, then opens a fresh one; between
calls it leads (when nobody else does) or parks, and at most :data:`MAX_IDLE_WORKERS` park at
once (the others end), so the pool tracks the peak concurrency without holding on to it. While
the host runs there is always a leader, or a worker on its way to lead. One consequence: a call
that sets a context variable without resetting it leaves it set for later calls run by that
worker.

Calls by callback (:meth:`TrioHost.call_by_callback`; ``peers.request()`` is one): work the
Trio side can start synchronously and that something else completes (a request's pending
entry is resolved by the reply, its deadline or the node stopping) is started by the leader in
its own step and completes through a callback that queues the result like a worker would, so
such a call costs no worker task and no task step of its own: the leader stays the leader and
the Trio side does per request less than a native Trio caller does. What may need to wait
before it is under way (a remote target, a full inbox) falls back to a worker. Each call keeps
as few objects alive as it can while in flight, since those objects are what Python's garbage
collector counts and promotes (64 callers through worker tasks and per-call closures set off a
full collection every few thousand requests; see ``benchmarks/README.md``).

The asyncio thread touches no Trio object (it writes to the doorbell's descriptor, and uses
the Trio token only to ask the run to stop), the Trio thread touches asyncio objects only
through ``call_soon_threadsafe``; everything else they share is plain data behind a lock.

Cancellation: when the awaiting asyncio task is cancelled, the call's Trio cancel scope is
cancelled through the same lane, and the asyncio side raises ``CancelledError`` only once the
Trio side has finished unwinding, so no Trio-side state (a pending request, say) outlives the
cancelled call. Exceptions raised on the Trio side reach the caller as the same objects.

Why not :class:`anyio.from_thread.BlockingPortal`: ``start_task_soon`` blocks the calling
thread until the Trio thread has picked the call up (``trio.from_thread.run_sync`` underneath),
which would stall the whole asyncio loop for a thread hop on every call, and cancelling its
future reports ``CancelledError`` before the Trio side has unwound. The thread still runs Trio
through :func:`anyio.run`, so agent code may use anyio as well as Trio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import anyio
import outcome
import trio

from .._sides import Started
from .._signals import leave_signals_to_the_main_thread
from ..errors import HostStopped, MeshError
from ..transport.handoff import Doorbell
from ._asyncio_calls import HostLoopPortal, enter_portal, exit_portal
from ._guard import asyncio_guard

__all__ = ["TrioHost"]

T = TypeVar("T")

log = logging.getLogger("jarvis_trio.compat")

_START = 0
_CANCEL = 1

_NO_KWARGS: dict[str, Any] = {}  # never mutated: one less object per call to collect

MAX_IDLE_WORKERS = 256
"""Idle worker tasks kept parked for the next calls; a worker finding this many ends."""


class _State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def _describe(fn: Callable[..., object]) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    return f"{getattr(target, '__qualname__', repr(target))}()"


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return False


class _Call:
    """One call in flight. Trio-side fields are touched only on the Trio thread; ``waiter``
    and ``delivered`` only on the caller's loop thread.

    ``start`` is set for a call made with :meth:`TrioHost.call_by_callback`; once started that
    way, ``started`` holds the work until it ends (``ended``), and the call itself is the
    work's ``done`` callback (no bound method to allocate per call)."""

    __slots__ = (
        "args",
        "cancel_requested",
        "delivered",
        "ended",
        "failed",
        "fn",
        "kwargs",
        "lane",
        "outcome",
        "scope",
        "start",
        "started",
        "waiter",
    )

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        lane: _Lane,
        waiter: asyncio.Future[Any],
        start: Callable[..., Started | None] | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.lane = lane
        self.waiter = waiter
        self.start = start
        self.started: Started | None = None
        self.ended = False
        self.scope: trio.CancelScope | None = None
        self.cancel_requested = False
        self.failed = False
        self.outcome: Any = None
        self.delivered = False

    def fail(self, error: BaseException) -> None:
        self.failed = True
        self.outcome = error

    def __call__(self, value: Any) -> None:
        """Trio thread: the outcome of a call started by callback (once; later ones and
        those after a cancellation are ignored)."""
        if self.ended:
            return
        self.ended = True
        self.started = None  # it may refer back to this call: no cycle left for the GC
        self.outcome = value
        host = self.lane.host
        active = host._active
        active.discard(self)
        if not active and not host._finished:
            self.lane.deliver([self])  # nothing else in flight: hand it back at once
            return
        host._finished.append(self)


class _Lane:
    """One asyncio loop's two-way channel with the host.

    ``slots`` bounds the calls in flight from that loop, and so every list below.
    """

    __slots__ = (
        "_kick_scheduled",
        "_lock",
        "_posted",
        "_ready",
        "_ready_scheduled",
        "host",
        "in_flight",
        "limit",
        "loop",
        "portal",
        "waiting",
    )

    def __init__(self, host: TrioHost, loop: asyncio.AbstractEventLoop, max_in_flight: int):
        self.host = host
        self.loop = loop
        self.portal = HostLoopPortal(loop)  # run_asyncio() of this lane's calls
        self.limit = max_in_flight
        self.in_flight = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._lock = threading.Lock()
        self._posted: list[tuple[int, _Call]] = []
        self._kick_scheduled = False
        self._ready: list[_Call] = []
        self._ready_scheduled = False

    # asyncio thread ---------------------------------------------------------------------

    async def take_slot(self) -> None:
        """Wait, first come first served, until fewer than ``limit`` calls are in flight."""
        if self.in_flight < self.limit and not self.waiting:
            self.in_flight += 1
            return
        slot: asyncio.Future[None] = self.loop.create_future()
        self.waiting.append(slot)
        try:
            await slot  # resolved by give_slot, which hands its slot over
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.give_slot()  # handed over just as we were cancelled: pass it on
            else:
                self.waiting.remove(slot)
            raise

    def give_slot(self) -> None:
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self.in_flight -= 1

    def post(self, op: int, call: _Call) -> None:
        """Queue a start or cancel for the Trio side.

        With other calls in flight, more posts are likely in this loop iteration: the kick
        waits for its end, to carry them all. A lone call is kicked at once."""
        with self._lock:
            self._posted.append((op, call))
            if self._kick_scheduled:
                return
            self._kick_scheduled = True
        if self.in_flight > 1:
            self.loop.call_soon(self._kick)
        else:
            self.host._wake_for(self)

    def _kick(self) -> None:
        self.host._wake_for(self)

    def _flush(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._ready_scheduled = False
        for call in ready:
            call.delivered = True
            waiter = call.waiter
            if waiter.done():
                continue
            if not call.failed:
                waiter.set_result(call.outcome)
                continue
            error = call.outcome
            if isinstance(error, StopIteration):  # a future cannot carry StopIteration
                wrapped = RuntimeError(f"{_describe(call.fn)} raised StopIteration")
                wrapped.__cause__ = error
                error = wrapped
            waiter.set_exception(error)

    # Trio thread (or any thread but the loop's) ----------------------------------------------

    def take_posted(self) -> list[tuple[int, _Call]]:
        with self._lock:
            posted, self._posted = self._posted, []
            self._kick_scheduled = False
        return posted

    def deliver(self, calls: list[_Call]) -> None:
        """Hand finished calls back to the loop with (at most) one wake-up."""
        with self._lock:
            self._ready.extend(calls)
            if self._ready_scheduled:
                return
            self._ready_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._flush)
        except RuntimeError:
            # The loop is closed: nobody can be waiting for these results any more.
            with self._lock:
                self._ready.clear()
                self._ready_scheduled = False


class _BatchEnd(trio.abc.Instrument):
    """Tells the host when Trio finished a scheduling batch, to hand results over at once."""

    def __init__(self, host: TrioHost) -> None:
        self._host = host

    def before_io_wait(self, timeout: float) -> None:
        if self._host._finished:
            try:
                self._host._deliver_finished()
            except Exception:  # Trio would disable a raising instrument: results would stall
                log.exception("handing results back to asyncio failed")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _notify(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Resolve ``future`` on its own loop, from any thread; a closed loop is ignored."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_resolve, future)


class TrioHost:
    """A Trio runtime on a dedicated daemon thread, callable from asyncio.

    ``await start()`` and ``await aclose()`` from asyncio; :meth:`call` to run Trio code;
    :meth:`run_sync` for short synchronous work on the Trio thread; :meth:`close_blocking` from
    a plain thread (interpreter exit). Shutdown hooks (see :meth:`add_shutdown_hook`) run on
    the Trio side, each bounded by ``shutdown_timeout``, before the remaining calls are
    cancelled.

    At most ``max_in_flight`` calls from one asyncio loop are on the Trio side at once; further
    callers wait, in order, for a slot (backpressure, not an error). That bound also bounds
    every buffer between the two threads.
    """

    def __init__(
        self,
        *,
        name: str = "jarvis-trio-runtime",
        shutdown_timeout: float = 10.0,
        max_in_flight: int = 10_000,
    ) -> None:
        if not shutdown_timeout > 0:
            raise ValueError(f"shutdown_timeout must be > 0 seconds, got {shutdown_timeout!r}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, got {max_in_flight!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self.name = name
        self.shutdown_timeout = shutdown_timeout
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._state = _State.NEW
        self._lanes: dict[asyncio.AbstractEventLoop, _Lane] = {}
        self._retired: list[_Lane] = []  # lanes of closed loops, until the run ends
        self._hooks: dict[int, tuple[object, Callable[[], Awaitable[object]]]] = {}
        self._stop_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop_event: trio.Event | None = None
        self._stop_early = False
        self._started: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._crash: BaseException | None = None
        # rung from the asyncio threads under ``_lock`` (which also guards ``_ready_lanes``:
        # the lanes with posts, each listed once until the leader takes them)
        self._doorbell: Doorbell | None = None
        self._ready_lanes: list[_Lane] = []
        # Trio thread only:
        self._active: set[_Call] = set()
        self._finished: list[_Call] = []
        self._idle: list[trio.lowlevel.Task] = []
        self._leading = False

    def __repr__(self) -> str:
        return f"<TrioHost {self.name} {self._state.value}>"

    # -- state ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from the end of :meth:`start` until a stop is requested."""
        return self._state is _State.RUNNING

    @property
    def stopped(self) -> bool:
        """True once the runtime thread has finished (or the host was closed before start)."""
        return self._state is _State.STOPPED

    @property
    def crash(self) -> BaseException | None:
        """What ended the Trio run abnormally, if anything did."""
        return self._crash

    def in_host_thread(self) -> bool:
        return self._thread_id is not None and threading.get_ident() == self._thread_id

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the runtime thread and wait (without blocking the loop) until it runs."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._state is not _State.NEW:
                raise MeshError(f"{self!r} was already started")
            self._state = _State.STARTING
        started: asyncio.Future[None] = loop.create_future()
        self._started = (loop, started)
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._thread.start()
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            await self.aclose()
            raise
        if self._state is not _State.RUNNING:
            raise HostStopped(f"{self!r} failed to start") from self._crash

    async def aclose(self) -> None:
        """Stop the runtime (shutdown hooks first) and wait until its thread has ended."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state is _State.NEW:
                self._state = _State.STOPPED
                self._stopped.set()
            if self._state is _State.STOPPED:
                return
            self._stop_waiters.append((loop, waiter))
        self._request_stop()
        await waiter
        if self._thread is not None:
            # The thread posts the wake-up as its very last act: this join is immediate.
            self._thread.join(timeout=1.0)

    async def wait_stopped(self) -> None:
        """Wait, from asyncio, until the runtime thread has ended."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state is _State.STOPPED:
                return
            self._stop_waiters.append((loop, waiter))
        await waiter

    def close_blocking(self, timeout: float) -> bool:
        """Stop the runtime from a plain thread, waiting at most ``timeout`` seconds; True
        when the runtime thread has ended. Used at interpreter exit."""
        if self.in_host_thread():
            raise MeshError("a TrioHost cannot be stopped from its own thread")
        with self._lock:
            if self._state is _State.NEW:
                self._state = _State.STOPPED
                self._stopped.set()
                return True
        self._request_stop()
        return self._stopped.wait(timeout)

    def _request_stop(self) -> None:
        with self._lock:
            if self._state is _State.STARTING:
                # The thread is not ready to take requests yet; it looks at this once it is.
                self._stop_early = True
                return
            token, event = self._token, self._stop_event
        if token is None or event is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(event.set)

    def add_shutdown_hook(self, key: object, hook: Callable[[], Awaitable[object]]) -> None:
        """Run ``await hook()`` on the Trio side when the host stops (before the remaining
        calls are cancelled), bounded by ``shutdown_timeout``. One hook per ``key``."""
        with self._lock:
            self._hooks[id(key)] = (key, hook)

    def remove_shutdown_hook(self, key: object) -> None:
        with self._lock:
            self._hooks.pop(id(key), None)

    # -- the runtime thread ----------------------------------------------------------------

    def _thread_main(self) -> None:
        leave_signals_to_the_main_thread()  # and to every thread this one starts
        try:
            anyio.run(self._trio_main, backend="trio")
        except BaseException as exc:  # reported to every waiter by _finish_thread
            self._crash = exc
            log.exception("the Trio runtime thread %s crashed", self.name)
        finally:
            self._finish_thread()

    async def _trio_main(self) -> None:
        batch_end = _BatchEnd(self)
        trio.lowlevel.add_instrument(batch_end)
        try:
            with asyncio_guard():
                await self._serve()
        finally:
            trio.lowlevel.remove_instrument(batch_end)

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._stop_event = trio.Event()
            self._thread_id = threading.get_ident()
            with self._lock:
                self._doorbell = Doorbell()
                self._state = _State.RUNNING
                stop_early = self._stop_early
            nursery.start_soon(self._worker, None, name=f"{self.name} worker")  # the leader
            if self._started is not None:
                _notify(*self._started)
            if not stop_early:
                await self._stop_event.wait()
            with self._lock:
                self._state = _State.STOPPING
                hooks = list(self._hooks.values())
                self._hooks.clear()
            await self._run_hooks(hooks)
            nursery.cancel_scope.cancel()

    async def _run_hooks(self, hooks: list[tuple[object, Callable[[], Awaitable[object]]]]) -> None:
        async def run_one(key: object, hook: Callable[[], Awaitable[object]]) -> None:
            with trio.move_on_after(self.shutdown_timeout) as scope:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown of %r failed while stopping %s", key, self.name)
            if scope.cancelled_caught:
                log.error(
                    "shutdown of %r took more than %.1f s; cancelled", key, self.shutdown_timeout
                )

        async with trio.open_nursery() as nursery:
            for key, hook in hooks:
                nursery.start_soon(run_one, key, hook)

    def _finish_thread(self) -> None:
        with self._lock:
            self._state = _State.STOPPED
            lanes = list(self._lanes.values())
            retired, self._retired = self._retired, []
            waiters, self._stop_waiters = self._stop_waiters, []
            self._ready_lanes.clear()  # the sweep below takes every lane's posts
            if self._doorbell is not None:  # rung only under this lock, never once STOPPED
                self._doorbell.close()
                self._doorbell = None
        for call in self._active:
            call.started = None  # no cycle left behind (see _Call.__call__)
            call.fail(
                HostStopped(f"the Trio runtime {self.name} stopped during {_describe(call.fn)}")
            )
            self._finished.append(call)
        self._active.clear()
        for lane in lanes:
            for op, call in lane.take_posted():
                if op == _START:
                    call.fail(
                        HostStopped(
                            f"the Trio runtime {self.name} stopped before {_describe(call.fn)} ran"
                        )
                    )
                    self._finished.append(call)
        self._deliver_finished()
        for lane in lanes + retired:  # the run has ended: nobody waits on their doorbells
            lane.portal.close()
        self._nursery = None
        self._stop_event = None
        if self._started is not None:  # wakes a start() that is still waiting, if any
            _notify(*self._started)
        self._stopped.set()
        for loop, waiter in waiters:
            _notify(loop, waiter)

    # -- asyncio → Trio ---------------------------------------------------------------------

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``await fn(*args, **kwargs)`` on the Trio thread; await the outcome here."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lane_for(loop)
        if lane.in_flight < lane.limit and not lane.waiting:
            lane.in_flight += 1  # the common case, without a coroutine for take_slot()
        else:
            await lane.take_slot()
        try:
            self._check_running(fn)
            call = _Call(fn, args, kwargs, lane, loop.create_future())
            lane.post(_START, call)
            try:
                return cast(T, await call.waiter)
            except asyncio.CancelledError:
                if call.delivered:
                    raise
                await self._cancel_and_unwind(call, loop)
                raise
        finally:
            lane.give_slot()

    async def call_by_callback(
        self,
        start: Callable[..., Started | None],
        fn: Callable[..., Awaitable[T]],
        *args: Any,
    ) -> T:
        """Like :meth:`call`, for work the Trio side can start without a task of its own.

        The leader that takes the call runs ``start(*args, done)`` in its own step: it either
        starts the work and returns it, the outcome reaching ``done(value)`` once (on the
        Trio thread, from whatever ends the work), or returns ``None`` having started
        nothing, and ``await fn(*args)`` runs in a worker as with :meth:`call`. An exception
        from ``start`` is the call's. Cancelling the caller cancels the work (``done`` must
        not be called after that) before ``CancelledError`` is raised.
        No worker task runs such a call: a request costs the Trio side what its own work
        costs (see ``benchmarks/README.md``)."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lane_for(loop)
        if lane.in_flight < lane.limit and not lane.waiting:
            lane.in_flight += 1
        else:
            await lane.take_slot()
        try:
            self._check_running(fn)
            call = _Call(fn, args, _NO_KWARGS, lane, loop.create_future(), start)
            lane.post(_START, call)
            try:
                return cast(T, await call.waiter)
            except asyncio.CancelledError:
                if call.delivered:
                    raise
                await self._cancel_and_unwind(call, loop)
                raise
        finally:
            lane.give_slot()

    async def _cancel_and_unwind(self, call: _Call, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the Trio side of ``call`` and wait until it has unwound. Further
        cancellations of the waiting task are absorbed: the caller re-raises one."""
        call.waiter = loop.create_future()
        call.lane.post(_CANCEL, call)
        while not call.delivered:
            try:
                await call.waiter
            except asyncio.CancelledError:
                if call.waiter.cancelled():
                    call.waiter = loop.create_future()
            except BaseException:
                pass  # the outcome of a call whose caller was cancelled is dropped

    def _check_running(self, fn: Callable[..., object]) -> None:
        state = self._state
        if state is not _State.RUNNING:
            raise HostStopped(
                f"the Trio runtime {self.name} is {state.value}: "
                f"{_describe(fn)} cannot run (start the mesh first, or it was stopped)"
            )

    def _lane_for(self, loop: asyncio.AbstractEventLoop) -> _Lane:
        with self._lock:
            lane = self._lanes.get(loop)
            if lane is None:
                for stale in [other for other in self._lanes if other.is_closed()]:
                    # its portal is closed with the others: a Trio task may still wait on it
                    self._retired.append(self._lanes.pop(stale))
                lane = self._lanes[loop] = _Lane(self, loop, self.max_in_flight)
            return lane

    def _wake_for(self, lane: _Lane) -> None:
        """asyncio thread, once per loop iteration with posts: have Trio take ``lane``'s."""
        with self._lock:
            doorbell = self._doorbell
            if doorbell is not None:
                if not self._ready_lanes:  # else rung already, and not taken yet
                    doorbell.ring()
                self._ready_lanes.append(lane)
                return
            if self._state is not _State.STOPPED:
                return  # not running yet: ``call`` refuses to post before RUNNING
        # The run ended: its final sweep failed what it found; fail what came later.
        for op, call in lane.take_posted():
            if op == _START:
                call.fail(HostStopped(f"the Trio runtime {self.name} has stopped"))
                lane.deliver([call])

    # -- Trio side ----------------------------------------------------------------------------

    def _take_ready(self) -> list[_Call]:
        """The calls posted since the last take, cancellations applied (Trio thread)."""
        with self._lock:
            lanes, self._ready_lanes = self._ready_lanes, []
        starts: list[_Call] = []
        for lane in lanes:
            for op, call in lane.take_posted():
                if op == _START:
                    if call.start is None or not self._start_now(call):
                        starts.append(call)
                elif call.started is not None:
                    call.started.cancel()
                    call(None)  # unwound: the caller raises its CancelledError
                elif call.scope is not None:
                    call.scope.cancel()
                else:
                    call.cancel_requested = True  # not started yet: it will not run
        return starts

    def _start_now(self, call: _Call) -> bool:
        """Start a call made by callback, here in the leader's step; ``False`` when it needs
        a worker after all. It must not raise (the leader would lose the calls it took)."""
        assert call.start is not None
        self._active.add(call)
        try:
            started = call.start(*call.args, call)
        except BaseException as exc:  # the call's own error (bad arguments, say)
            if not call.ended:
                call.fail(exc)
                call(exc)
            return True
        if call.ended:  # ended as it started
            return True
        if started is None:
            self._active.discard(call)
            return False
        call.started = started
        return True

    def _dispatch(self, call: _Call | None) -> None:
        """Hand ``call`` to a parked worker or a new one (``None``: the leadership).

        It must not raise (the leader would lose the calls it took), so a failure is reported
        to the call instead."""
        if self._idle:
            trio.lowlevel.reschedule(self._idle.pop(), outcome.Value(call))
            return
        nursery = self._nursery
        if nursery is not None:
            try:
                nursery.start_soon(self._worker, call, name=f"{self.name} worker")
            except RuntimeError:  # the nursery is closed to new tasks
                pass
            else:
                return
        if call is not None:
            call.fail(
                HostStopped(
                    f"the Trio runtime {self.name} is stopping: {_describe(call.fn)} did not run"
                )
            )
            self._finished.append(call)

    async def _worker(self, call: _Call | None) -> None:
        if call is None:
            call = await self._next_call()
        while call is not None:
            with trio.CancelScope() as scope:
                while call is not None:
                    await self._execute(call, scope)
                    call = await self._next_call()
                return
            # The scope ended a cancelled call; the next calls get a fresh one.
            call = await self._next_call()

    async def _next_call(self) -> _Call | None:
        """The next call for this worker: it leads when nobody does, else parks until a call
        (or the leadership) is handed over; ``None`` when enough workers idle."""
        while True:
            if not self._leading:
                return await self._lead()
            if len(self._idle) >= MAX_IDLE_WORKERS:
                return None
            handed = await self._park()
            if handed is not None:
                return handed

    async def _park(self) -> _Call | None:
        """Wait among the idle workers for a call, or ``None``: the leadership."""
        idle = self._idle
        task = trio.lowlevel.current_task()
        idle.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:
            idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        handed: _Call | None = await trio.lowlevel.wait_task_rescheduled(abort)
        return handed

    async def _lead(self) -> _Call:
        """Wait on the doorbell; woken, take every posted call, hand all but the first to
        other workers, pass the leadership on and return the first, to run it in this very
        scheduling batch (a parked worker would only run in the next one)."""
        doorbell = self._doorbell
        assert doorbell is not None
        self._leading = True
        try:
            while True:
                await trio.lowlevel.wait_readable(doorbell.fileno())
                doorbell.clear()  # before the take: a later post rings again
                calls = self._take_ready()
                if calls:
                    break
        finally:
            self._leading = False
        for call in calls[1:]:
            self._dispatch(call)
        self._dispatch(None)  # a parked (or new) worker leads from now on
        return calls[0]

    async def _execute(self, call: _Call, scope: trio.CancelScope) -> None:
        """Run one call in ``scope``; a Cancelled meant for this call propagates to it."""
        if call.cancel_requested:  # cancelled before it started: it does not run
            self._finished.append(call)
            return
        self._active.add(call)
        call.scope = scope
        # run_asyncio() in what this call runs (and in tasks it starts) uses the caller's loop
        portal = enter_portal(call.lane.portal)
        try:
            call.outcome = await call.fn(*call.args, **call.kwargs)
        except BaseException as exc:
            if _only_cancelled(exc):
                if not scope.cancel_called:  # the host's own nursery is being cancelled
                    call.fail(
                        HostStopped(
                            f"the Trio runtime {self.name} stopped while {_describe(call.fn)} "
                            "was running"
                        )
                    )
                raise
            call.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            exit_portal(portal)
            call.scope = None
            self._active.discard(call)
            self._finished.append(call)

    def _deliver_finished(self) -> None:
        """Trio thread, at the end of a scheduling batch: hand every finished call back."""
        finished, self._finished = self._finished, []
        if not finished:
            return
        if len(finished) == 1 or all(c.lane is finished[0].lane for c in finished):
            finished[0].lane.deliver(finished)
            return
        by_lane: dict[int, tuple[_Lane, list[_Call]]] = {}
        for call in finished:
            by_lane.setdefault(id(call.lane), (call.lane, []))[1].append(call)
        for lane, calls in by_lane.values():
            lane.deliver(calls)

    # -- synchronous calls ---------------------------------------------------------------------

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the Trio thread and return its result, blocking the calling
        thread for the hop (directly when already on the Trio thread)."""
        if self.in_host_thread():
            return fn(*args)
        with self._lock:
            state, token = self._state, self._token
        if state is not _State.RUNNING or token is None:
            raise HostStopped(
                f"the Trio runtime {self.name} is {state.value}: {_describe(fn)} cannot run"
            )
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=token)
        except trio.RunFinishedError:
            raise HostStopped(
                f"the Trio runtime {self.name} stopped before {_describe(fn)} ran"
            ) from None
