"""Property-test a SWIM configuration: the simulator, fault schedules, named invariants.

* :class:`Simulator` - many protocol instances, one process, virtual time, a hostile network
  (loss, delay, jitter, duplication, reordering, partitions, crashes, restarts, stalls,
  graceful leaves), deterministic from a seed;
* steps of a fault schedule (:class:`Advance`, :class:`Network`, :class:`Crash`, ...) and
  hypothesis strategies that draw them (:func:`fault_steps`, :func:`fault_schedules`, ...);
* named invariants (:class:`EventualConvergence`, :class:`NoFalseDeath`,
  :class:`CrashDetected`, :class:`Refutation`, :class:`NoResurrection`);
* :class:`GossipMachine`, a ready ``RuleBasedStateMachine``, and :func:`replay`, which runs a
  printed failing schedule again, byte for byte.

The strategies and the machine need hypothesis (``pip install 'jarvis_trio[testing]'``);
the simulator, schedules, invariants and :func:`replay` do not. See docs/property-testing.md.
"""

from typing import TYPE_CHECKING, Any

from ...swim.config import SwimConfig
from ...swim.members import EventKind, MembershipEvent, MemberState
from ...swim.sim import NetConfig, ProtocolFactory, SimNode, Simulator
from .invariants import (
    CrashDetected,
    EventualConvergence,
    Invariant,
    NoFalseDeath,
    NoResurrection,
    Refutation,
    crash_bound,
    default_invariants,
)
from .scenario import GossipViolation, Outcome, Scenario, replay
from .schedule import (
    Advance,
    Crash,
    Heal,
    Join,
    Leave,
    Network,
    Partition,
    Restart,
    Stall,
    Step,
    apply_step,
)

if TYPE_CHECKING:
    from .machine import GossipMachine, gossip_settings
    from .strategies import (
        advances,
        cluster_sizes,
        fault_schedules,
        fault_steps,
        networks,
        seeds,
    )

__all__ = [
    "Advance",
    "Crash",
    "CrashDetected",
    "EventKind",
    "EventualConvergence",
    "GossipMachine",
    "GossipViolation",
    "Heal",
    "Invariant",
    "Join",
    "Leave",
    "MemberState",
    "MembershipEvent",
    "NetConfig",
    "Network",
    "NoFalseDeath",
    "NoResurrection",
    "Outcome",
    "Partition",
    "ProtocolFactory",
    "Refutation",
    "Restart",
    "Scenario",
    "SimNode",
    "Simulator",
    "Stall",
    "Step",
    "SwimConfig",
    "advances",
    "apply_step",
    "cluster_sizes",
    "crash_bound",
    "default_invariants",
    "fault_schedules",
    "fault_steps",
    "gossip_settings",
    "networks",
    "replay",
    "seeds",
]


def __getattr__(name: str) -> Any:
    """The hypothesis-based names load on first use, so that the rest works without it."""
    if name in ("GossipMachine", "gossip_settings"):
        from . import machine

        return getattr(machine, name)
    if name in ("advances", "cluster_sizes", "fault_schedules", "fault_steps", "networks", "seeds"):
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
