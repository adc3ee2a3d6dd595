"""The runtime's threads leave process signals (Ctrl-C's SIGINT, SIGTERM, ...) to the main thread.

A signal sent to the process lands on any thread that does not block it, and CPython runs its
Python handler only when the main thread next runs bytecode; ``asyncio.run`` sleeping in
``epoll_wait`` with no wake-up descriptor then never heard of a Ctrl-C that landed on the Trio
thread. Checked on the masks themselves, which is deterministic where the race is not.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import trio

from jarvis_trio._signals import MAIN_THREAD_SIGNALS
from jarvis_trio.compat import TrioHost
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
