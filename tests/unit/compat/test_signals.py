"""The runtime's threads leave process signals (Ctrl-C's SIGINT, SIGTERM, ...) to the main thread.

A signal sent to the process lands on any thread that does not block it, and CPython runs its
Python handler only when the main thread next runs bytecode; ``asyncio.run`` sleeping in
``epoll_wait`` with no wake-up descriptor then never heard of a Ctrl-C that landed on the Trio
thread. Checked on the masks themselves, which is deterministic where the race is not.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import trio

from jarvis_trio._signals import MAIN_THREAD_SIGNALS
from jarvis_trio.compat import TrioHost
from jarvis_trio.compat._lifecycle import acquire_host, release_host
from jarvis_trio.transport import BridgeSettings, open_bridge


def blocked_here() -> set[int]:
    return {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])}


def blocked_in(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, read from /proc (SigBlk: a hex mask, bit n-1 = signal n)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        line = next(ln for ln in status if ln.startswith("SigBlk:"))
    mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


WANTED = {int(s) for s in MAIN_THREAD_SIGNALS}


def test_the_signals_are_the_asynchronous_ones() -> None:
    assert {signal.SIGINT, signal.SIGTERM} <= MAIN_THREAD_SIGNALS
    assert not {signal.SIGSEGV, signal.SIGFPE, signal.SIGBUS} & MAIN_THREAD_SIGNALS


def test_the_trio_host_thread_and_the_threads_it_starts_block_them(on_asyncio: Any) -> None:
    async def scenario() -> tuple[set[int], set[int], set[int]]:
        host = TrioHost()
        await host.start()
        try:

            async def masks() -> tuple[set[int], set[int]]:
                # a thread started from the host thread (Trio's own workers may be cached
                # from before the host started, so a plain thread stands for them)
                seen: list[set[int]] = []
                child = threading.Thread(target=lambda: seen.append(blocked_here()))
                child.start()
                await trio.to_thread.run_sync(child.join)
                return blocked_here(), seen[0]

            host_mask, worker_mask = await host.call(masks)
            return host_mask, worker_mask, blocked_here()
        finally:
            await host.aclose()

    host_mask, worker_mask, main_mask = on_asyncio(scenario)
    assert host_mask >= WANTED and worker_mask >= WANTED
    assert not WANTED & main_mask  # the main thread still takes them


async def test_the_zeromq_io_thread_blocks_them() -> None:
    async with open_bridge(BridgeSettings("signals")):
        (io_thread,) = [t for t in threading.enumerate() if t.name == "jarvis-zmq-signals"]
        assert blocked_in(io_thread) >= WANTED
    assert not WANTED & blocked_here()


def current_wakeup_fd() -> int:
    """The signal wake-up descriptor now set (main thread only), left as it was."""
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    return fd


def test_a_loop_hosting_a_runtime_on_the_main_thread_is_woken_by_every_signal(
    on_asyncio: Any,
) -> None:
    """A signal's Python handler runs only once the main thread runs bytecode: the loop hosting
    a runtime must wake for it even when it landed outside the loop's sleep (see
    ``test_process_exit.py`` for the Ctrl-C it is for)."""
    assert current_wakeup_fd() == -1

    async def scenario() -> tuple[int, bool]:
        host = await acquire_host()
        try:
            fd = current_wakeup_fd()
            woken = asyncio.get_running_loop().create_future()
            previous = signal.signal(signal.SIGUSR1, lambda *_: woken.set_result(True))
            try:
                # the C-level handler runs on a thread that is not the loop's, which stays
                # asleep unless the descriptor wakes it
                elsewhere = threading.Thread(
                    target=lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
                )
                elsewhere.start()
                got = await woken
                elsewhere.join()
            finally:
                signal.signal(signal.SIGUSR1, previous)
            return fd, got
        finally:
            await release_host(host)

    fd, got = on_asyncio(scenario)
    assert fd != -1 and got
    assert current_wakeup_fd() == -1  # put back as the hosting ends: trio.run finds none


def test_a_wakeup_descriptor_the_program_set_is_left_alone(on_asyncio: Any) -> None:
    async def scenario() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR2, lambda: None)  # asyncio sets its own descriptor
        try:
            own = current_wakeup_fd()
            host = await acquire_host()
            try:
                during = current_wakeup_fd()
            finally:
                await release_host(host)
            return own, during, current_wakeup_fd()
        finally:
            loop.remove_signal_handler(signal.SIGUSR2)

    own, during, after = on_asyncio(scenario)
    assert own != -1 and during == own and after == own
    assert current_wakeup_fd() == -1


def test_a_loop_on_another_thread_sets_no_wakeup_descriptor(on_asyncio: Any) -> None:
    """Signal handlers run on the main thread, whatever a loop elsewhere does."""
    seen: list[bool] = []

    async def scenario() -> None:
        host = await acquire_host()
        try:
            seen.append(host.running)
        finally:
            await release_host(host)

    elsewhere = threading.Thread(target=lambda: on_asyncio(scenario))
    elsewhere.start()
    elsewhere.join()
    assert seen == [True]
    assert current_wakeup_fd() == -1


def test_the_loop_that_shuts_down_without_stopping_its_runtime_puts_it_back(
    on_asyncio: Any,
) -> None:
    """``asyncio.run`` ending with the runtime still up (Ctrl-C's path): the guard stops the
    runtime, then the descriptor goes."""
    during: list[int] = []

    async def scenario() -> None:
        await acquire_host()  # never released
        during.append(current_wakeup_fd())

    on_asyncio(scenario)
    assert during[0] != -1
    assert current_wakeup_fd() == -1
