"""A signal wakes the asyncio loop that hosts a runtime, so that its Python handler runs.

CPython runs a signal's Python handler on the main thread, the next time that thread executes
bytecode; the C-level handler only records the signal. A thread asleep in ``epoll_wait`` is
woken by a signal the kernel delivers to *it* while it sleeps, and by nothing else: a signal
whose C-level handler ran on another thread, or on the main thread after its last check for
signals but before it went to sleep, is only acted on when the loop wakes for some other
reason. ``asyncio.run`` installs its SIGINT handler (the one that cancels the main task on
Ctrl-C) with ``signal.signal`` and sets no wake-up descriptor, and a mesh waiting in
``run_forever()`` gives its loop nothing else to wake for: such a Ctrl-C was ignored (the Ctrl-C
test of ``tests/integration/compat/test_process_exit.py`` hung now and then in full test runs on
a loaded machine). The window is short, but the main thread gives the GIL up on its way into
the wait, often to the runtime thread that the call it has just posted woke, and on a loaded
machine it can be preempted right there.

:func:`signal.set_wakeup_fd` is CPython's answer to exactly this race: the C-level handler
writes the signal's number to that descriptor. While a runtime is hosted from a loop running on
the main thread, :func:`wake_loop_on_signals` points it at a socket the loop watches, so every
signal wakes the loop, which then runs the pending handler. A descriptor the program set itself
(``loop.add_signal_handler`` sets the loop's own) is left alone, and the previous state (none)
is restored when the hosting ends, so that a later ``trio.run`` on the main thread finds no
descriptor of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from dataclasses import dataclass

__all__ = ["stop_waking_loop", "wake_loop_on_signals"]


@dataclass(eq=False)
class _Wakeup:
    loop: asyncio.AbstractEventLoop
    owner: object
    reader: socket.socket
    writer: socket.socket


# Touched only by the main thread: the only thread that may set the wake-up descriptor. Holding
# the sockets here keeps the descriptor the signal module writes to open while it is installed.
_installed: _Wakeup | None = None


def _drain(reader: socket.socket) -> None:
    """Read the signal numbers written since the last wake-up. Running at all is the point:
    the handlers of those signals run as soon as the main thread executes bytecode."""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while reader.recv(4096):
            pass


def wake_loop_on_signals(loop: asyncio.AbstractEventLoop, owner: object) -> bool:
    """From ``loop``'s thread: have every signal wake ``loop`` until :func:`stop_waking_loop`
    is called with the same ``owner`` (or another owner takes it over for the same loop).

    True when the wake-up descriptor is ours. Nothing is done off the main thread (signal
    handlers run on the main thread, whatever its loop does), on a loop that cannot watch a
    socket, or when the program set a wake-up descriptor of its own."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    if _installed is not None:
        if _installed.loop is loop:
            _installed.owner = owner
            return True
        # set up for a loop that never shut its runtime down (closed, or run no more): the
        # main thread runs this loop now
        _remove(_installed)
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    try:
        loop.add_reader(reader.fileno(), _drain, reader)
    except NotImplementedError:  # a loop that cannot watch descriptors
        reader.close()
        writer.close()
        return False
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # an interpreter whose main thread does not handle signals
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()
        return False
    if previous != -1:
        signal.set_wakeup_fd(previous)  # the program's own: it stays
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()
        return False
    _installed = _Wakeup(loop, owner, reader, writer)
    return True


def stop_waking_loop(owner: object | None = None) -> None:
    """Undo :func:`wake_loop_on_signals` of ``owner`` (``None``: of any owner), from the main
    thread; elsewhere, or for an owner whose loop another owner took over, it does nothing."""
    installed = _installed
    if installed is None or threading.current_thread() is not threading.main_thread():
        return
    if owner is not None and installed.owner is not owner:
        return
    _remove(installed)


def _remove(installed: _Wakeup) -> None:
    global _installed
    _installed = None
    current = signal.set_wakeup_fd(-1)
    if current != installed.writer.fileno():
        signal.set_wakeup_fd(current)  # the program installed its own over ours since: keep it
    if not installed.loop.is_closed():
        installed.loop.remove_reader(installed.reader.fileno())
    installed.reader.close()
    installed.writer.close()
