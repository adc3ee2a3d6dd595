"""Hypothesis strategies for clusters and fault schedules.

Values are drawn from small sets (losses of 0, 1, 5, 10, 20 %; a few delays) rather than
continuous ranges: shrinking then lands on round, readable numbers, and the first alternative
of every choice is the harmless one, which is where hypothesis shrinks to.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .schedule import Advance, Crash, Heal, Join, Leave, Network, Partition, Restart, Stall, Step

__all__ = [
    "advances",
    "cluster_sizes",
    "fault_schedules",
    "fault_steps",
    "networks",
    "seeds",
]

LOSSES = (0.0, 0.01, 0.05, 0.1, 0.2)
DELAYS = (0.001, 0.005, 0.02, 0.1)
JITTERS = (0.001, 0.005, 0.02)


def seeds() -> st.SearchStrategy[int]:
    """Simulator seeds (32 bits)."""
    return st.integers(0, 2**32 - 1)


def cluster_sizes(low: int = 4, high: int = 16) -> st.SearchStrategy[int]:
    """Initial cluster sizes from ``low`` to ``high``."""
    return st.integers(low, high)


def advances(low: float = 0.5, high: float = 10.0) -> st.SearchStrategy[Advance]:
    """Virtual time passing, in whole and half seconds (readable when shrunk)."""
    return st.integers(int(low * 2), int(high * 2)).map(lambda h: Advance(h / 2))


def networks(
    losses: tuple[float, ...] = LOSSES,
    delays: tuple[float, ...] = DELAYS,
    jitters: tuple[float, ...] = JITTERS,
) -> st.SearchStrategy[Network]:
    """Network conditions: loss, delay, jitter, duplication and reordering."""
    return st.builds(
        Network,
        loss=st.sampled_from(losses),
        delay=st.sampled_from(delays),
        jitter=st.sampled_from(jitters),
        duplicate=st.sampled_from((0.0, 0.01, 0.05)),
        reorder=st.sampled_from((0.0, 0.02, 0.1)),
    )


def fault_steps(
    *,
    networks: st.SearchStrategy[Network] | None = None,
    advances: st.SearchStrategy[Advance] | None = None,
    crashes: bool = True,
    restarts: bool = True,
    joins: bool = True,
    leaves: bool = True,
    stalls: bool = True,
    partitions: bool = True,
    max_stall: float = 5.0,
) -> st.SearchStrategy[Step]:
    """One step of a fault schedule; switch kinds of fault off with the flags.

    Time passing comes first (and twice as often as anything else): shrinking turns faults
    into waits, so a shrunk schedule keeps only the faults the failure needs.
    """
    wait = advances if advances is not None else _advances()
    net = networks if networks is not None else _networks()
    node = st.integers(0, 63)
    choices: list[st.SearchStrategy[Step]] = [wait, wait, net]
    if crashes:
        choices.append(st.builds(Crash, node))
    if restarts:
        choices.append(st.builds(Restart, node))
    if joins:
        choices.append(st.just(Join()))
    if leaves:
        choices.append(st.builds(Leave, node))
    if stalls:
        seconds = st.integers(1, int(max_stall * 2)).map(lambda h: h / 2)
        choices.append(st.builds(Stall, node, seconds))
    if partitions:
        choices.append(st.builds(Partition, node, st.booleans()))
        choices.append(st.just(Heal()))
    return st.one_of(choices)


_advances = advances
_networks = networks


def fault_schedules(
    min_steps: int = 0, max_steps: int = 25, steps: st.SearchStrategy[Step] | None = None
) -> st.SearchStrategy[list[Step]]:
    """Whole schedules of ``steps`` (by default :func:`fault_steps`), for ``@given`` tests and
    :func:`~jarvis_trio.testing.gossip.replay`."""
    return st.lists(steps or fault_steps(), min_size=min_steps, max_size=max_steps)
