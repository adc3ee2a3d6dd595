"""Trio tasks await coroutines on an asyncio loop that runs on another thread.

One :class:`AsyncioCrossing` joins one Trio run to one asyncio loop, and carries both
directions of every :func:`~jarvis_trio.run_asyncio` call between them:

* Trio → asyncio: starts and cancellations queue in a list under a lock; the first one into an
  empty list wakes the loop once for all of them, so a burst of calls costs the loop one
  wake-up. The wake-up is a second ``eventfd`` the loop watches with ``loop.add_reader``
  (registered, on the loop's thread, by the first call, which reaches the loop with
  ``call_soon_threadsafe``); a loop without ``add_reader`` keeps ``call_soon_threadsafe``. On
  the 2-core development VM ``call_soon_threadsafe`` cost ~9 µs more per round trip: a socket
  write the loop then reads back in a loop until it would block, and one more handle to run.
  Each coroutine runs inside a small wrapper task that hands its outcome back itself, in the
  step that finishes it, and unregisters, as it enters, the done-callback that covers a task
  cancelled before its first step: nothing is left for the loop to run after the ring. Every
  step the ringing thread still takes after its ring competes with the woken thread for the
  GIL.
* asyncio → Trio: finished calls queue in a second list; the first one into an empty list rings
  a :class:`~jarvis_trio.transport.handoff.Doorbell` (an ``eventfd``). On the Trio side one of
  the waiting tasks, the *leader*, waits on its descriptor with
  ``trio.lowlevel.wait_readable``; woken, it takes every finished call, reschedules their
  waiters and, once its own call is back, hands the leadership to another waiter. A lone caller
  is therefore woken by the kernel directly: no detour through Trio's entry-queue task
  (``TrioToken.run_sync_soon``) and no second scheduling batch.

Neither thread touches the other's objects: the asyncio thread reaches Trio only through the
descriptor, the Trio thread reaches asyncio only through ``call_soon_threadsafe`` and the
descriptor the loop watches (registered and unregistered on the loop's thread); what they
share is plain data behind a lock.

Cancellation crosses both ways. A cancelled Trio waiter asks for the asyncio task to be
cancelled, goes on waiting (shielded) until the task has unwound, and only then raises its
cancellation, so no asyncio work outlives its Trio caller. A task that ends cancelled on the
asyncio side (its loop shutting down, or the library cancelling itself) raises
:class:`~jarvis_trio.errors.AsyncioCallCancelled` in the Trio caller, which must not see a
foreign cancellation exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import outcome
import trio

from ..errors import AsyncioCallCancelled
from ..transport.handoff import Doorbell

__all__ = ["AsyncioCrossing"]

T = TypeVar("T")

_START = 0
_CANCEL = 1

_VALUE = 0
_ERROR = 1
_CANCELLED = 2


class _Job:
    """One call. ``outcome`` is written once, on the asyncio thread, before the job is handed
    back; ``task`` only on the asyncio thread; ``cancel_sent`` only on the Trio thread."""

    __slots__ = ("cancel_sent", "coro", "never_ran", "outcome", "task")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.task: asyncio.Task[None] | None = None
        self.never_ran: Callable[[asyncio.Task[None]], object] | None = None
        self.outcome: tuple[int, Any] | None = None
        self.cancel_sent = False


class AsyncioCrossing:
    """Runs coroutines on ``loop`` for the tasks of one Trio run (see the module's doc).

    :meth:`close` releases the doorbell; call it once no Trio task can be waiting any more
    (:meth:`wait_idle`, or after the Trio run ended). Calls started after it are refused.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        # Rings happen outside _lock: a ring is a system call that lets the woken thread run,
        # and it would find _lock held and sleep on it (~20 us more per round trip on the
        # 2-core development VM). A doorbell is rung, and closed, under _ring_lock, which the
        # woken thread does not take to read what it was woken for.
        self._ring_lock = threading.Lock()
        # guarded by _lock:
        self._jobs: list[tuple[int, _Job]] = []
        self._jobs_scheduled = False
        self._go: Doorbell | None = None  # watched by the loop: rung instead of call_soon
        self._go_tried = False  # loop thread only: registering it was attempted
        self._done: list[_Job] = []
        self._armed = True  # the next finished job must ring (the leader may be asleep)
        self._doorbell: Doorbell | None = None
        self._closed = False
        # Trio thread only:
        self._leading = False
        self._parked: dict[_Job, trio.lowlevel.Task] = {}
        self._waiting = 0
        self._idle: trio.Event | None = None

    # -- Trio side ---------------------------------------------------------------------------

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as a task of the loop and return (or raise) its outcome."""
        what = getattr(coro, "__qualname__", repr(coro))
        job = _Job(coro)
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError(f"the asyncio loop of {what} is no longer served")
            if self._doorbell is None:
                self._doorbell = Doorbell()
        try:
            self._send(_START, job)
        except RuntimeError:  # the loop is closed
            coro.close()
            raise
        self._waiting += 1
        try:
            cancelled = await self._wait(job)
        finally:
            self._waiting -= 1
            if not self._leading and self._parked:
                self._pass_lead()
            if self._waiting == 0 and self._idle is not None:
                self._idle.set()
        if cancelled is not None:
            cancelled.unwrap()
        assert job.outcome is not None
        kind, value = job.outcome
        if kind == _VALUE:
            return cast(T, value)
        if kind == _ERROR:
            raise value
        raise AsyncioCallCancelled(f"{what} was cancelled on the asyncio side")

    async def _wait(self, job: _Job) -> outcome.Outcome[Any] | None:
        """Wait until ``job`` is back; lead while nobody else does, else park.

        A cancellation meanwhile cancels the asyncio task and is returned (as an outcome that
        raises it) once the task has unwound."""
        cancelled: outcome.Outcome[Any] | None = None
        while job.outcome is None:
            if not self._leading:
                cancelled = await self._lead(job, cancelled)
                continue
            task = trio.lowlevel.current_task()
            self._parked[job] = task

            def abort(raise_cancel: Callable[[], object]) -> trio.lowlevel.Abort:
                nonlocal cancelled
                if cancelled is None:
                    cancelled = outcome.capture(raise_cancel)
                    self._cancel(job)
                return trio.lowlevel.Abort.FAILED  # it still waits for the task to unwind

            await trio.lowlevel.wait_task_rescheduled(abort)
            self._parked.pop(job, None)
        return cancelled

    async def _lead(
        self, job: _Job, cancelled: outcome.Outcome[Any] | None
    ) -> outcome.Outcome[Any] | None:
        doorbell = self._doorbell
        assert doorbell is not None
        self._leading = True
        try:
            while job.outcome is None:
                if cancelled is None:
                    try:
                        await trio.lowlevel.wait_readable(doorbell.fileno())
                    except BaseException as exc:  # cancelled (or interrupted): unwind first
                        cancelled = outcome.Error(exc)
                        self._cancel(job)
                        continue
                else:
                    with trio.CancelScope(shield=True):
                        await trio.lowlevel.wait_readable(doorbell.fileno())
                self._take_done(doorbell)
        finally:
            self._leading = False
        return cancelled

    def _take_done(self, doorbell: Doorbell) -> None:
        doorbell.clear()  # before the take: a job handed back later rings again
        with self._lock:
            done, self._done = self._done, []
            self._armed = True
        for job in done:
            task = self._parked.pop(job, None)
            if task is not None:
                trio.lowlevel.reschedule(task)

    def _pass_lead(self) -> None:
        """Wake one parked waiter; finding nobody leading, it leads."""
        _, task = self._parked.popitem()
        trio.lowlevel.reschedule(task)

    def _cancel(self, job: _Job) -> None:
        if job.cancel_sent:
            return
        job.cancel_sent = True
        try:
            self._send(_CANCEL, job)
        except RuntimeError:
            # The loop is closed and will never run the task to its end: nothing of it can
            # still be running, so the call ends here.
            self._finish(job, _CANCELLED, None)

    def _send(self, op: int, job: _Job) -> None:
        with self._lock:
            self._jobs.append((op, job))
            if self._jobs_scheduled:
                return  # the wake-up already scheduled takes it along
            self._jobs_scheduled = True
            go = self._go
        if go is not None and not self.loop.is_closed():
            with self._ring_lock:
                # closed meanwhile (unwatch()): what unwatch() then starts takes the job along
                go.ring()
            return
        try:
            self.loop.call_soon_threadsafe(self._start_jobs)
        except RuntimeError:
            with self._lock:
                self._jobs.remove((op, job))
                self._jobs_scheduled = bool(self._jobs)
            raise

    async def wait_idle(self) -> None:
        """Wait until no Trio task waits for a call (every call sent has come back)."""
        while self._waiting:
            self._idle = trio.Event()
            await self._idle.wait()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Refuse further calls and release the doorbell (nobody may wait on it any more)."""
        with self._lock:
            self._closed = True
            doorbell, self._doorbell = self._doorbell, None
            go = self._go
        if go is not None:
            # the loop's selector is the loop thread's: unregister there (a loop that is
            # closed already has closed its selector, and the descriptor can go at once)
            try:
                self.loop.call_soon_threadsafe(self.unwatch)
            except RuntimeError:
                with self._lock:
                    self._go = None
                with self._ring_lock:
                    go.close()
        if doorbell is not None:
            # outside the Trio run (it ended, and forgot the descriptor) there is none to tell
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.notify_closing(doorbell.fileno())
            with self._ring_lock:  # not while the loop's thread rings it
                doorbell.close()

    # -- asyncio side ------------------------------------------------------------------------

    def _watch(self) -> None:
        """Register the descriptor Trio rings to wake the loop (on the loop's thread, once)."""
        self._go_tried = True
        go = Doorbell()
        try:
            self.loop.add_reader(go.fileno(), self._go_rung)
        except (NotImplementedError, OSError):  # no add_reader: call_soon_threadsafe stays
            go.close()
            return
        with self._lock:
            if not self._closed:
                self._go = go
                return
        self.loop.remove_reader(go.fileno())
        go.close()

    def unwatch(self) -> None:
        """Unregister the descriptor and go back to ``call_soon_threadsafe`` (on the loop's
        thread, while it runs: before the loop stops for good, or once the crossing closed);
        whatever was rung for meanwhile is started here."""
        with self._lock:
            go, self._go = self._go, None  # nobody starts a ring of it after this
        if go is not None:
            self.loop.remove_reader(go.fileno())
            with self._ring_lock:
                go.close()
            self._start_jobs()

    def _go_rung(self) -> None:
        go = self._go
        if go is not None:
            go.clear()  # before the take: a job queued later rings again
        self._start_jobs()

    def _start_jobs(self) -> None:
        if not self._go_tried:
            self._watch()
        with self._lock:
            jobs, self._jobs = self._jobs, []
            self._jobs_scheduled = False
        for op, job in jobs:
            if op == _START:
                job.never_ran = functools.partial(self._never_ran, job)
                task = self.loop.create_task(self._drive(job))
                job.task = task
                if job.never_ran is not None:  # else it ran already (an eager task factory)
                    task.add_done_callback(job.never_ran)
            elif job.task is not None:
                job.task.cancel()

    async def _drive(self, job: _Job) -> None:
        never_ran, job.never_ran = job.never_ran, None
        if never_ran is not None and job.task is not None:
            job.task.remove_done_callback(never_ran)  # it runs: it hands its outcome back itself
        try:
            value = await job.coro
        except asyncio.CancelledError:
            self._finish(job, _CANCELLED, None)
            raise
        except BaseException as exc:
            self._finish(job, _ERROR, exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: the loop's business too
        else:
            self._finish(job, _VALUE, value)

    def _never_ran(self, job: _Job, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never entered ``_drive``: hand it back."""
        if job.outcome is None:
            job.coro.close()
            self._finish(job, _CANCELLED, None)

    def _finish(self, job: _Job, kind: int, value: Any) -> None:
        """Hand ``job`` back to the Trio side (from the loop's thread, or from Trio when the
        loop is gone)."""
        if job.outcome is not None:
            return
        job.outcome = (kind, value)
        with self._lock:
            self._done.append(job)
            if not self._armed:
                return
            self._armed = False
            doorbell = self._doorbell
        if doorbell is not None:
            with self._ring_lock:  # closed meanwhile (close()): nobody waits for it any more
                doorbell.ring()
