"""Peer discovery and messaging: the PeerClient API, the agent directory and the routing core.

Modules, one concern each: :mod:`.messages` (the message value object), :mod:`.payload`
(JSON-compatibility checks that copy), :mod:`.directory` (local and remote agents),
:mod:`.strategies` (discovery ordering), :mod:`.inbox` (an agent's bounded queue),
:mod:`.pending` (requests waiting for a response), :mod:`.router` (delivery; the
``RemoteRoute`` seam to the cross-node layer), :mod:`.client` (``PeerClient``).
"""

from .client import PeerClient
from .directory import AgentDirectory, PeerInfo
from .messages import IncomingMessage
from .router import NodeStats, RemoteRoute

__all__ = [
    "AgentDirectory",
    "IncomingMessage",
    "NodeStats",
    "PeerClient",
    "PeerInfo",
    "RemoteRoute",
]
