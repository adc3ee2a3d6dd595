"""jarvis_trio: a Trio-native actor runtime for agents that talk peer to peer.

Public names are re-exported here; every other module is private. Development helpers (a
real redis-server on a free port, a development Nexus gateway) live in
:mod:`jarvis_trio.testing`.

Layers, bottom to top; a module imports only from its own layer or below, with no cycle
(``tests/unit/test_layering.py`` enforces it, ``docs/architecture.md`` explains it)::

    1 errors, config, payload, _sides    values, the exception tree, the asyncio/Trio sides
    2 swim/ transport/ storage/ auth/     protocols and services that know nothing of agents;
      mailbox/ services _redis compat/    compat/ is the Trio host an asyncio program borrows
    3 peers/ cluster/                     routing between agents, on one node and across nodes
    4 agent, _supervision                 what users subclass and how it is kept alive
    5 mesh                                the composition root: builds and wires one node
    6 testing/ (ops/, cli)                built on the whole runtime; this package's names
"""

from ._supervision import DEFAULT_RESTART, NO_RESTART, RestartPolicy
from .agent import Agent, CustomAgent
from .auth import (
    AuthenticationManager,
    AuthSettings,
    ConnectionId,
    ConsentPrompt,
    NexusCallProxy,
    open_auth_manager,
)
from .config import MeshConfig, SeedAddress
from .errors import (
    AgentCrashed,
    AgentDefinitionError,
    AsyncioMisuseError,
    AuthError,
    AuthTimeout,
    BlobNotFound,
    BlobTooLarge,
    ConfigError,
    ConnectionNotActive,
    DuplicateAgentError,
    FrameError,
    HostStopped,
    JarvisError,
    MailboxError,
    MailboxFull,
    MeshError,
    NexusNotConfigured,
    NexusProtocolError,
    NexusUnavailable,
    PayloadError,
    PayloadTooLarge,
    PeerUnavailable,
    RedisUnavailable,
    StorageError,
    TransportError,
    UnsafePathError,
)
from .mailbox import MailboxSettings, open_mailbox_hub
from .mesh import Mesh, open_mesh
from .peers import IncomingMessage, NodeStats, PeerClient, PeerInfo, RemoteRoute
from .peers.membership import ClusterEvent, EventStream, MemberInfo
from .services import Mailbox, MailboxMessage
from .storage.blob import BlobStorage
from .storage.redis_store import RedisStore, StreamEntry, open_redis_store
from .swim import (
    EventKind,
    KeyInfo,
    Keyring,
    Member,
    MembershipEvent,
    MemberState,
    NodeMeta,
    SwimConfig,
    SwimNode,
    open_swim_node,
)

__all__ = [
    "DEFAULT_RESTART",
    "NO_RESTART",
    "Agent",
    "AgentCrashed",
    "AgentDefinitionError",
    "AsyncioMisuseError",
    "AuthError",
    "AuthSettings",
    "AuthTimeout",
    "AuthenticationManager",
    "BlobNotFound",
    "BlobStorage",
    "BlobTooLarge",
    "ClusterEvent",
    "ConfigError",
    "ConnectionId",
    "ConnectionNotActive",
    "ConsentPrompt",
    "CustomAgent",
    "DuplicateAgentError",
    "EventKind",
    "EventStream",
    "FrameError",
    "HostStopped",
    "IncomingMessage",
    "JarvisError",
    "KeyInfo",
    "Keyring",
    "Mailbox",
    "MailboxError",
    "MailboxFull",
    "MailboxMessage",
    "MailboxSettings",
    "Member",
    "MemberInfo",
    "MemberState",
    "MembershipEvent",
    "Mesh",
    "MeshConfig",
    "MeshError",
    "NexusCallProxy",
    "NexusNotConfigured",
    "NexusProtocolError",
    "NexusUnavailable",
    "NodeMeta",
    "NodeStats",
    "PayloadError",
    "PayloadTooLarge",
    "PeerClient",
    "PeerInfo",
    "PeerUnavailable",
    "RedisStore",
    "RedisUnavailable",
    "RemoteRoute",
    "RestartPolicy",
    "SeedAddress",
    "StorageError",
    "StreamEntry",
    "SwimConfig",
    "SwimNode",
    "TransportError",
    "UnsafePathError",
    "open_auth_manager",
    "open_mailbox_hub",
    "open_mesh",
    "open_redis_store",
    "open_swim_node",
]
