"""The public property-testing kit finds a broken protocol and prints a schedule that replays.

The broken variant never refutes a suspicion (``_refute`` does nothing): a node suspected
while it was merely slow stays accused, is declared dead, and never comes back. The kit must
find a schedule that shows it, print the seed and the shrunk schedule, and ``replay`` must
reproduce that run byte for byte (the same trace digest).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import pytest
from hypothesis.stateful import run_state_machine_as_test

from jarvis_trio.swim.protocol import SwimProtocol
from jarvis_trio.testing import gossip
from jarvis_trio.testing.gossip import (
    Advance,
    Crash,
    EventualConvergence,
    GossipMachine,
    GossipViolation,
    Leave,
    Network,
    NoFalseDeath,
    Refutation,
    Stall,
    SwimConfig,
    gossip_settings,
    replay,
)


class NoRefutation(SwimProtocol):
    """Deliberately broken: a suspected node never bumps its incarnation."""

    def _refute(self, claimed: int) -> None:
        return None


class BrokenCluster(GossipMachine):
    nodes = 5
    protocol_factory = NoRefutation
    settle = 30.0  # a broken cluster never converges: do not wait long for it


def test_the_kit_finds_a_protocol_without_refutation_and_the_schedule_replays() -> None:
    with pytest.raises(GossipViolation) as info:
        run_state_machine_as_test(
            BrokenCluster,
            settings=gossip_settings(max_examples=40, steps=10, derandomize=True, database=None),
        )
    message = str(info.value)
    print(message)
    assert re.search(r"^seed=\d+ nodes=5 steps=\d+", message, re.M), message
    call = message[message.index("BrokenCluster.replay(") :]
    digest = re.search(r"trace sha256 ([0-9a-f]{64})", message)
    assert digest is not None
    names = {name: getattr(gossip, name) for name in gossip.__all__}
    outcome = eval(call, {**names, "BrokenCluster": BrokenCluster})  # the printed line, as is
    assert outcome.violation is not None and outcome.violation in message
    assert outcome.digest == digest.group(1)  # byte for byte
    assert hashlib.sha256(outcome.trace).hexdigest() == outcome.digest
    # the same schedule on the real protocol breaks nothing: the variant is what failed
    schedule = eval(call.split("schedule=", 1)[1].rstrip()[:-1], names)
    healthy = replay(outcome_seed(message), schedule, nodes=5, settle=30.0)
    assert healthy.violation is None, healthy.violation


def outcome_seed(message: str) -> int:
    found = re.search(r"^seed=(\d+)", message, re.M)
    assert found is not None
    return int(found.group(1))


def test_a_stall_shows_the_missing_refutation_directly() -> None:
    schedule = [Advance(2.0), Stall(node=2, seconds=4.0), Advance(10.0)]
    broken = replay(7, schedule, nodes=6, protocol_factory=NoRefutation)
    assert broken.violation is not None
    assert broken.violation.startswith(("[eventual convergence]", "[refutation]"))
    fine = replay(7, schedule, nodes=6)
    assert fine.violation is None, fine.violation


def test_replay_is_byte_for_byte_and_seed_dependent() -> None:
    schedule = [
        Network(loss=0.05, duplicate=0.01, reorder=0.02),
        Advance(5.0),
        Crash(node=3),
        Stall(node=1, seconds=2.5),
        Advance(20.0),
        Leave(node=4),
        Advance(10.0),
    ]
    first = replay(1234, schedule, nodes=10)
    assert first.violation is None, first.violation
    assert replay(1234, schedule, nodes=10).trace == first.trace and len(first.trace) > 1000
    assert replay(4321, schedule, nodes=10).trace != first.trace


def test_a_bad_configuration_is_found_suspicion_too_short_for_the_loss() -> None:
    """The guide's example: on a link losing 30 % of datagrams, a configuration without
    indirect probes, extra gossip or Lifeguard and with a one-period suspicion timeout
    declares live nodes dead; memberlist's LAN profile (the default) does not."""
    hasty = SwimConfig(
        indirect_probes=0,
        gossip_interval=None,
        suspicion_mult=1,
        suspicion_max_mult=1,
        lifeguard=False,
    )
    schedule = [Network(loss=0.3), Advance(60.0)]
    checks = [NoFalseDeath(loss_bound=0.3), Refutation(), EventualConvergence()]
    bad = replay(3, schedule, nodes=16, config=hasty, invariants=checks)
    assert bad.violation is not None and bad.violation.startswith("[no false death]")
    assert replay(3, schedule, nodes=16, invariants=checks).violation is None


def test_every_public_name_resolves_and_hypothesis_loads_only_when_needed() -> None:
    for name in gossip.__all__:
        assert getattr(gossip, name) is not None, name
    probe = (
        "import sys, jarvis_trio.testing.gossip as g;"
        "g.replay(1, [g.Advance(1.0)], nodes=4);"
        "assert 'hypothesis' not in sys.modules, 'hypothesis imported eagerly'"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
