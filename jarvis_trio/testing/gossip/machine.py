"""A ready hypothesis state machine over the simulator: subclass it, set your configuration
and the invariants to check, and let hypothesis look for a fault schedule that breaks them.

.. code-block:: python

    class MyCluster(GossipMachine):
        config = SwimConfig(period=0.5, probe_timeout=0.2)
        nodes = 16
        checks = (EventualConvergence(), NoFalseDeath(loss_bound=0.05))

    TestMyCluster = MyCluster.TestCase
    TestMyCluster.settings = gossip_settings(max_examples=100, steps=25)

Each example starts a cluster from a drawn seed, applies drawn steps (the ``step`` rule), checks
the invariants after every step and, at the end, once the faults stop. A failure raises
:class:`~jarvis_trio.testing.gossip.GossipViolation` whose message has the seed, the schedule
(shrunk, when hypothesis reports the minimal example) and the ``replay(...)`` call that
reproduces it byte for byte.
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from ...swim.config import SwimConfig
from ...swim.protocol import SwimProtocol
from ...swim.sim import ProtocolFactory
from .invariants import Invariant, default_invariants
from .scenario import GossipViolation, Outcome, Scenario, replay
from .schedule import Step
from .strategies import fault_steps, seeds

__all__ = ["GossipMachine", "gossip_settings"]


def gossip_settings(max_examples: int = 100, steps: int = 25, **overrides: object) -> settings:
    """Hypothesis settings suited to simulated clusters.

    No deadline (an example's cost depends on how much virtual time its steps ask for); one
    failure reported, with its schedule (several distinct failures would each print one);
    and no *explain* phase: its line tracing slows the simulator some fifty times while it
    re-runs the shrunk example. ``overrides`` go to :class:`hypothesis.settings` as they are.
    """
    options: dict[str, object] = {
        "max_examples": max_examples,
        "stateful_step_count": steps,
        "deadline": None,
        "report_multiple_bugs": False,
        "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    options.update(overrides)
    return settings(**options)  # type: ignore[arg-type]


class GossipMachine(RuleBasedStateMachine):
    """Random faults against a simulated cluster, checked by named invariants."""

    nodes: ClassVar[int] = 16
    """Cluster size at the start (joins may add nodes)."""
    config: ClassVar[SwimConfig] = SwimConfig()
    """The protocol configuration under test."""
    checks: ClassVar[tuple[Invariant, ...]] = default_invariants()
    """The invariants checked (prototypes: each example gets fresh copies)."""
    protocol_factory: ClassVar[ProtocolFactory] = SwimProtocol
    """The protocol (a variant of your own, or a deliberately broken one)."""
    step_strategy: ClassVar[st.SearchStrategy[Step]] = fault_steps()
    """What a step may be (see :func:`~jarvis_trio.testing.gossip.fault_steps`)."""
    min_running: ClassVar[int] = 3
    """Crashes and leaves that would leave fewer running nodes are skipped."""
    settle: ClassVar[float | None] = None
    """Virtual seconds the cluster gets to converge once the faults stop (default: twice
    the crash bound)."""

    def __init__(self) -> None:
        super().__init__()
        self.scenario: Scenario | None = None

    @initialize(seed=seeds())
    def start(self, seed: int) -> None:
        """A fresh cluster, warmed up, from ``seed``."""
        cls = type(self)
        self.scenario = Scenario(
            seed,
            nodes=cls.nodes,
            config=cls.config,
            invariants=cls.checks,
            protocol_factory=cls.protocol_factory,
            min_running=cls.min_running,
            settle=cls.settle,
        )

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        """Apply one drawn step; fail at once if an invariant broke."""
        assert self.scenario is not None
        drawn = data.draw(type(self).step_strategy, label="step")
        if self.scenario.apply(drawn) is not None:
            self._fail()

    def teardown(self) -> None:
        """The faults stop; the final checks run (unless the run failed already)."""
        scenario = self.scenario
        if scenario is None or scenario.violation is not None:
            return
        if scenario.finish() is not None:
            self._fail()

    def _fail(self) -> None:
        assert self.scenario is not None
        raise GossipViolation(self.scenario.report(f"{type(self).__name__}.replay"))

    @classmethod
    def replay(cls, seed: int, schedule: list[Step], *, nodes: int | None = None) -> Outcome:
        """:func:`~jarvis_trio.testing.gossip.replay` with this class's configuration,
        protocol and invariants."""
        return replay(
            seed,
            schedule,
            nodes=cls.nodes if nodes is None else nodes,
            config=cls.config,
            invariants=cls.checks,
            protocol_factory=cls.protocol_factory,
            min_running=cls.min_running,
            settle=cls.settle,
        )
