"""Logging for inbound paths that must survive floods of bad input.

A hostile or broken peer can send thousands of bad frames a second; logging each would turn
its bad input into our disk and CPU problem. :class:`ThrottledLog` logs the first occurrence
of each kind of problem, then at most one line per ``interval`` saying how many more were
dropped since; the exact counts live in the caller's counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["ThrottledLog"]


class ThrottledLog:
    """At most one record per ``interval`` seconds per key (the rest are summed)."""

    __slots__ = ("_clock", "_interval", "_last", "_level", "_log", "_suppressed")

    def __init__(
        self,
        log: logging.Logger,
        interval: float = 10.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval = interval
        self._level = level
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged within the interval; True if it
        was logged. Keys are a fixed set of reasons (never peer-chosen text), so the tables
        stay small."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            message += " (%d more like it since the last report)"
            args = (*args, skipped)
        self._log.log(self._level, message, *args)
        return True
