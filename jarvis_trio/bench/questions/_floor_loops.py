"""The cheapest crossings between an asyncio loop and a Trio run in two threads, from scratch.

Used by ``bench_floors`` to measure what ``run_asyncio`` hosted from asyncio and the asyncio
shim cannot go below, with no code of the runtime in the path:

* Trio -> asyncio -> Trio, a callback that creates nothing: the Trio task posts to the loop
  (``call_soon_threadsafe``, or an eventfd the loop watches with ``add_reader``); the callback
  rings an eventfd the Trio task sleeps on;
* the same where the callback starts the coroutine as an asyncio Task, which rings in its last
  step (the least ``run_asyncio`` must do: the coroutine may await anything of the loop's);
* asyncio -> Trio -> asyncio: an asyncio task queues a future and rings a doorbell the Trio
  side waits on; the Trio side resolves the future through the loop (``call_soon_threadsafe``
  of ``set_result``, or an eventfd the loop watches), and the asyncio task resumes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import trio

from jarvis_trio.bench.questions._floor_bridge import make_doorbell

__all__ = ["Crossings", "asyncio_thread"]

_FLAGS = os.EFD_NONBLOCK | os.EFD_CLOEXEC


@contextmanager
def asyncio_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop running forever in its own thread; stopped and closed on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="floors-asyncio", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()


async def _noop() -> None:
    return None


def _drain(fd: int) -> None:
    with suppress(BlockingIOError):
        os.eventfd_read(fd)


class Crossings:
    """The crossings, set up once per Trio run with the loop of :func:`asyncio_thread`.

    Every ``measure_*`` method times ``count`` sequential round trips (seconds each); use
    it as an async context manager so that the loop's readers and the descriptors go away.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._back = os.eventfd(0, _FLAGS)  # asyncio -> the Trio task (a and b)
        self._go = os.eventfd(0, _FLAGS)  # Trio -> asyncio's reader (a and b)
        self._results = os.eventfd(0, _FLAGS)  # Trio -> asyncio's reader (c)
        self._on_go: Callable[[], object] = lambda: None
        self._resolved: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> Crossings:
        loop = self.loop

        def readers() -> None:
            loop.add_reader(self._go, self._go_ready)
            loop.add_reader(self._results, self._results_ready)
            os.eventfd_write(self._back, 1)

        loop.call_soon_threadsafe(readers)
        await self._wait_back()
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = self.loop

        def remove() -> None:
            loop.remove_reader(self._go)
            loop.remove_reader(self._results)
            os.eventfd_write(self._back, 1)

        loop.call_soon_threadsafe(remove)
        with trio.CancelScope(shield=True), trio.fail_after(5):
            await self._wait_back()
        for fd in (self._back, self._go, self._results):
            os.close(fd)

    # -- the asyncio side's callbacks (run in the loop's thread) ------------------------------
    def _go_ready(self) -> None:
        _drain(self._go)
        self._on_go()

    def _results_ready(self) -> None:
        _drain(self._results)
        resolved = self._resolved
        while resolved:
            resolved.popleft().set_result(None)

    async def _wait_back(self) -> None:
        await trio.lowlevel.wait_readable(self._back)
        _drain(self._back)

    # -- Trio -> asyncio -> Trio ---------------------------------------------------------------
    async def measure_to_asyncio(self, count: int, *, post: str, task: bool) -> list[float]:
        """``post``: ``call_soon_threadsafe`` or ``add_reader``; ``task``: whether the
        callback starts a no-op coroutine as a Task (it rings back in its last step)."""
        loop, back, go = self.loop, self._back, self._go
        write = os.eventfd_write

        def ring_back() -> None:
            write(back, 1)

        async def job() -> None:
            await _noop()
            write(back, 1)

        def start_task() -> None:
            loop.create_task(job())

        callback = start_task if task else ring_back
        if post == "call_soon_threadsafe":
            soon = loop.call_soon_threadsafe

            def send() -> None:
                soon(callback)
        elif post == "add_reader":
            self._on_go = callback

            def send() -> None:
                write(go, 1)
        else:
            raise ValueError(f"unknown post {post!r}")
        samples = []
        wait = self._wait_back
        clock = time.perf_counter
        for _ in range(count):
            started = clock()
            send()
            await wait()
            samples.append(clock() - started)
        return samples

    # -- asyncio -> Trio -> asyncio ------------------------------------------------------------
    async def measure_from_asyncio(self, count: int, *, doorbell: str, back: str) -> list[float]:
        """An asyncio task's ``count`` sequential calls into the Trio thread. ``doorbell``
        wakes the Trio side (see :data:`._floor_bridge.DOORBELLS`); ``back`` resolves the
        future: ``call_soon_threadsafe`` of ``set_result``, or ``add_reader`` (an eventfd the
        loop watches, its callback resolving what the Trio side queued)."""
        loop = self.loop
        bell = make_doorbell(doorbell)
        calls: deque[asyncio.Future[None]] = deque()
        if back == "call_soon_threadsafe":
            soon = loop.call_soon_threadsafe

            def resolve(future: asyncio.Future[None]) -> None:
                soon(future.set_result, None)
        elif back == "add_reader":
            resolved, results = self._resolved, self._results

            def resolve(future: asyncio.Future[None]) -> None:
                resolved.append(future)
                os.eventfd_write(results, 1)
        else:
            raise ValueError(f"unknown back {back!r}")

        async def serve() -> None:
            while True:
                while not calls:
                    await bell.wait()
                while calls:
                    resolve(calls.popleft())

        async def caller() -> list[float]:
            create, ring, push = loop.create_future, bell.ring, calls.append
            clock = time.perf_counter
            samples = []
            for _ in range(count):
                started = clock()
                future = create()
                push(future)
                ring()
                await future
                samples.append(clock() - started)
            return samples

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                samples: list[float] = await _await_on(loop, caller())
                nursery.cancel_scope.cancel()
        finally:
            bell.close()
        return samples


async def _await_on(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any]) -> Any:
    """Run ``coro`` on ``loop`` (another thread) and wait for it without blocking Trio."""

    async def wrapped() -> Any:
        return await coro

    future = asyncio.run_coroutine_threadsafe(wrapped(), loop)
    return await trio.to_thread.run_sync(future.result, 60)
