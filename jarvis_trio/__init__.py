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

Names resolve lazily (PEP 562): ``import jarvis_trio`` costs almost nothing, so a
command such as ``jarvis-trio members`` starts in well under a second, and the first use of
a name imports only the modules behind it.
"""

import types as _types
import typing as _typing

if _typing.TYPE_CHECKING:
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
    from .compat import run_asyncio
    from .config import MeshConfig, SeedAddress
    from .errors import (
        AgentCrashed,
        AgentDefinitionError,
        AsyncioCallCancelled,
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
        JoinError,
        MailboxError,
        MailboxFull,
        MeshError,
        NexusNotConfigured,
        NexusProtocolError,
        NexusUnavailable,
        NodeNameConflict,
        PayloadError,
        PayloadTooLarge,
        PeerUnavailable,
        RedisUnavailable,
        StorageError,
        TransportError,
        UnsafePathError,
    )
    from .mailbox import DeadLetter, MailboxSettings, open_mailbox_hub
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
    "AsyncioCallCancelled",
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
    "DeadLetter",
    "DuplicateAgentError",
    "EventKind",
    "EventStream",
    "FrameError",
    "HostStopped",
    "IncomingMessage",
    "JarvisError",
    "JoinError",
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
    "NodeNameConflict",
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
    "run_asyncio",
]

_HOMES = {
    "DEFAULT_RESTART": "._supervision",
    "NO_RESTART": "._supervision",
    "Agent": ".agent",
    "AgentCrashed": ".errors",
    "AgentDefinitionError": ".errors",
    "AsyncioCallCancelled": ".errors",
    "AsyncioMisuseError": ".errors",
    "AuthError": ".errors",
    "AuthSettings": ".auth",
    "AuthTimeout": ".errors",
    "AuthenticationManager": ".auth",
    "BlobNotFound": ".errors",
    "BlobStorage": ".storage.blob",
    "BlobTooLarge": ".errors",
    "ClusterEvent": ".peers.membership",
    "ConfigError": ".errors",
    "ConnectionId": ".auth",
    "ConnectionNotActive": ".errors",
    "ConsentPrompt": ".auth",
    "CustomAgent": ".agent",
    "DuplicateAgentError": ".errors",
    "EventKind": ".swim",
    "EventStream": ".peers.membership",
    "FrameError": ".errors",
    "HostStopped": ".errors",
    "IncomingMessage": ".peers",
    "JarvisError": ".errors",
    "JoinError": ".errors",
    "NodeNameConflict": ".errors",
    "KeyInfo": ".swim",
    "Keyring": ".swim",
    "DeadLetter": ".mailbox",
    "Mailbox": ".services",
    "MailboxError": ".errors",
    "MailboxFull": ".errors",
    "MailboxMessage": ".services",
    "MailboxSettings": ".mailbox",
    "Member": ".swim",
    "MemberInfo": ".peers.membership",
    "MemberState": ".swim",
    "MembershipEvent": ".swim",
    "Mesh": ".mesh",
    "MeshConfig": ".config",
    "MeshError": ".errors",
    "NexusCallProxy": ".auth",
    "NexusNotConfigured": ".errors",
    "NexusProtocolError": ".errors",
    "NexusUnavailable": ".errors",
    "NodeMeta": ".swim",
    "NodeStats": ".peers",
    "PayloadError": ".errors",
    "PayloadTooLarge": ".errors",
    "PeerClient": ".peers",
    "PeerInfo": ".peers",
    "PeerUnavailable": ".errors",
    "RedisStore": ".storage.redis_store",
    "RedisUnavailable": ".errors",
    "RemoteRoute": ".peers",
    "RestartPolicy": "._supervision",
    "SeedAddress": ".config",
    "StorageError": ".errors",
    "StreamEntry": ".storage.redis_store",
    "SwimConfig": ".swim",
    "SwimNode": ".swim",
    "TransportError": ".errors",
    "UnsafePathError": ".errors",
    "open_auth_manager": ".auth",
    "open_mailbox_hub": ".mailbox",
    "open_mesh": ".mesh",
    "open_redis_store": ".storage.redis_store",
    "open_swim_node": ".swim",
    "run_asyncio": ".compat",
}


def _load(home: str) -> _types.ModuleType:
    """The module behind a public name (imported here, by name, so that tools see it)."""
    if home == "._supervision":
        from . import _supervision

        return _supervision
    if home == ".agent":
        from . import agent

        return agent
    if home == ".auth":
        from . import auth

        return auth
    if home == ".compat":
        from . import compat

        return compat
    if home == ".config":
        from . import config

        return config
    if home == ".errors":
        from . import errors

        return errors
    if home == ".mailbox":
        from . import mailbox

        return mailbox
    if home == ".mesh":
        from . import mesh

        return mesh
    if home == ".peers":
        from . import peers

        return peers
    if home == ".peers.membership":
        from .peers import membership

        return membership
    if home == ".services":
        from . import services

        return services
    if home == ".storage.blob":
        from .storage import blob

        return blob
    if home == ".storage.redis_store":
        from .storage import redis_store

        return redis_store
    if home == ".swim":
        from . import swim

        return swim
    raise AssertionError(home)  # pragma: no cover - _HOMES names only the modules above


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jarvis_trio' has no attribute {name!r}")
    value = getattr(_load(home), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
