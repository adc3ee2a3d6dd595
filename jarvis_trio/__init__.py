"""jarvis_trio: a Trio-native actor runtime for agents that talk peer to peer.

Public names are re-exported here; every other module is private.
"""

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

__all__ = [
    "AgentCrashed",
    "AsyncioMisuseError",
    "AuthError",
    "AuthTimeout",
    "ConfigError",
    "ConnectionNotActive",
    "DuplicateAgentError",
    "FrameError",
    "JarvisError",
    "MailboxError",
    "MailboxFull",
    "MeshConfig",
    "MeshError",
    "NexusProtocolError",
    "PayloadError",
    "PayloadTooLarge",
    "StorageError",
    "TransportError",
    "UnsafePathError",
]
