"""Leave asynchronous signals to the main thread.

The kernel delivers a signal sent to the process (Ctrl-C's SIGINT, ``kill``'s SIGTERM) to any
thread that does not block it, and CPython runs the Python handler only when the *main* thread
next executes bytecode. asyncio installs no signal wake-up descriptor for ``asyncio.run``'s
SIGINT handler, so while its loop sleeps in ``epoll_wait`` on the main thread, a SIGINT that
landed on one of the runtime's threads sat unhandled until something else woke the loop: a
hosted program ignored Ctrl-C (seen in about one in twenty-five runs of
``tests/integration/compat/test_process_exit.py`` on a loaded machine). Every thread the runtime
starts blocks these signals before it does anything else, so they reach the main thread; the
threads those threads start inherit the mask (Trio's worker threads, unless Trio's cache
already held them from before the runtime started).

That narrows the race without closing it: a signal that reaches the main thread just before it
goes to sleep, or a thread the program started itself, is no better off. The hosting loop is
therefore also woken by every signal (``jarvis_trio.compat._signal_wakeup``).
"""

from __future__ import annotations

import signal

__all__ = ["MAIN_THREAD_SIGNALS", "leave_signals_to_the_main_thread"]

MAIN_THREAD_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""Signals a program may handle in Python; synchronous ones (SIGSEGV, SIGFPE, ...) are left
alone, as the thread that causes them must receive them."""


def leave_signals_to_the_main_thread() -> None:
    """Block :data:`MAIN_THREAD_SIGNALS` in the calling thread (a no-op without
    ``pthread_sigmask``)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, MAIN_THREAD_SIGNALS)
