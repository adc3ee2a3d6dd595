"""Supervision of an agent's ``run()``: restart with bounded exponential backoff, or stop the
node when the policy says a crash is fatal.

A crash is logged exactly once, with its traceback, where it is handled here. The backoff
delay grows by ``multiplier`` per consecutive crash up to ``max_delay`` and is jittered
downwards by up to ``jitter`` (a fraction) with the node's injectable RNG, so restarts of many
agents spread out yet tests stay deterministic. A run that lasted ``reset_after`` seconds
before crashing starts the sequence again from ``initial_delay``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .errors import AgentCrashed
from .peers.inbox import AgentInbox

__all__ = ["DEFAULT_RESTART", "NO_RESTART", "RestartPolicy", "Supervised", "supervise"]

_log = logging.getLogger("jarvis_trio.supervision")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How a crashing ``run()`` is treated. ``restart=False`` makes a crash fatal."""

    restart: bool = True
    initial_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay", "reset_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"RestartPolicy.{name} must be a finite number ≥ 0, got {value!r}")
        if self.multiplier < 1:
            raise ValueError(f"RestartPolicy.multiplier must be ≥ 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RestartPolicy.jitter must be within 0..1, got {self.jitter!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based)."""
        exponent = min(attempt, 64)
        base = min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        return base * (1.0 - self.jitter * rng.random())


DEFAULT_RESTART = RestartPolicy()
NO_RESTART = RestartPolicy(restart=False)


@dataclass(frozen=True, slots=True)
class Supervised:
    """What supervision keeps alive: an agent's main loop and the inbox it serves.

    ``receivers`` is how many tasks of ``main`` take messages from ``inbox`` at once (the
    inbox uses it to tell a busy agent from an idle one when the node stops).
    """

    agent_id: str
    role: str
    main: Callable[[], Awaitable[None]]
    inbox: AgentInbox
    receivers: int


async def supervise(
    agent: Supervised,
    policy: RestartPolicy,
    rng: random.Random,
    on_fatal: Callable[[AgentCrashed], None],
) -> None:
    """Run the agent's main loop until the node stops it, applying ``policy`` to crashes.

    Returns when the agent's run scope is cancelled by a stop request, or after reporting a
    fatal crash through ``on_fatal``. A ``run()`` that returns by itself leaves the agent
    registered and idle until the node stops.
    """
    inbox = agent.inbox
    main = agent.main
    receivers = agent.receivers
    attempt = 0
    try:
        while not inbox.stopping:
            failure: Exception | None = None
            with trio.CancelScope() as scope:
                inbox.run_scope = scope
                inbox.workers = receivers
                began = trio.current_time()
                try:
                    await main()
                except Exception as exc:
                    failure = exc
                finally:
                    inbox.workers = 0
                inbox.quiesce_if_stopping()
                if failure is None:
                    await trio.sleep_forever()
                    continue  # pragma: no cover - sleep_forever only ends by cancellation
                if not policy.restart:
                    _log.error(
                        "agent %s: run() crashed; its restart policy makes this fatal, "
                        "stopping the node",
                        agent.agent_id,
                        exc_info=failure,
                    )
                    crash = AgentCrashed(
                        f"agent {agent.agent_id} (role {agent.role!r}): run() raised "
                        f"{type(failure).__name__}: {failure}"
                    )
                    crash.__cause__ = failure
                    on_fatal(crash)
                    return
                if trio.current_time() - began >= policy.reset_after:
                    attempt = 0
                delay = policy.delay(attempt, rng)
                attempt += 1
                _log.error(
                    "agent %s: run() crashed (restart %d in %.3f s)",
                    agent.agent_id,
                    attempt,
                    delay,
                    exc_info=failure,
                )
                del failure
                await trio.sleep(delay)
            if scope.cancelled_caught:
                return
    finally:
        inbox.run_scope = None
