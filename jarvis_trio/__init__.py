"""jarvis_trio: a Trio-native actor runtime for agents that talk peer to peer.

Public names are re-exported here; every other module is private.
"""

from .agent import Agent, CustomAgent
from .config import MeshConfig
from .errors import (
    AgentCrashed,
    AsyncioMisuseError,
    AuthError,
    AuthTimeout,
    ConfigError,
    ConnectionNotActive,
    DuplicateAgentError,
    FrameError,
    JarvisError,
    MailboxError,
    MailboxFull,
    MeshError,
    NexusProtocolError,
    PayloadError,
    PayloadTooLarge,
    StorageError,
    TransportError,
    UnsafePathError,
)
from .mesh import Mesh, open_mesh
from .peers import IncomingMessage, PeerClient, PeerInfo
from .services import MailboxMessage

__all__ = [
    "Agent",
    "AgentCrashed",
    "AsyncioMisuseError",
    "AuthError",
    "AuthTimeout",
    "ConfigError",
    "ConnectionNotActive",
    "CustomAgent",
    "DuplicateAgentError",
    "FrameError",
    "IncomingMessage",
    "JarvisError",
    "MailboxError",
    "MailboxFull",
    "MailboxMessage",
    "Mesh",
    "MeshConfig",
    "MeshError",
    "NexusProtocolError",
    "PayloadError",
    "PayloadTooLarge",
    "PeerClient",
    "PeerInfo",
    "StorageError",
    "TransportError",
    "UnsafePathError",
    "open_mesh",
]
