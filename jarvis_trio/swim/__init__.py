"""SWIM membership with Lifeguard: a pure protocol core, a Trio UDP driver, a simulator.

* :mod:`.protocol` - :class:`SwimProtocol`, the sans-I/O state machine;
* :mod:`.members` - member records, metadata and the merge rules;
* :mod:`.codec` - the binary wire format (versioned, optionally HMAC-authenticated);
* :mod:`.keyring` - :class:`Keyring`, the cluster keys: several verify, the primary signs;
* :mod:`.broadcasts` - the piggyback queue; :mod:`.lifeguard` - health and suspicion timers;
* :mod:`.driver` - :func:`open_swim_node` / :class:`SwimNode` on ``trio.socket`` UDP;
* :mod:`.sim` - :class:`Simulator`, many nodes in virtual time over a faulty network.
"""

from __future__ import annotations

from .config import SwimConfig
from .driver import Subscription, SwimNode, open_swim_node
from .keyring import KeyInfo, Keyring
from .members import EventKind, Member, MembershipEvent, MemberState, NodeMeta
from .protocol import Effects, SwimProtocol
from .sim import NetConfig, Simulator

__all__ = [
    "Effects",
    "EventKind",
    "KeyInfo",
    "Keyring",
    "Member",
    "MemberState",
    "MembershipEvent",
    "NetConfig",
    "NodeMeta",
    "Simulator",
    "Subscription",
    "SwimConfig",
    "SwimNode",
    "SwimProtocol",
    "open_swim_node",
]
