"""The exception tree of jarvis_trio.

Every error the runtime raises on purpose derives from :class:`JarvisError`, and also from
the built-in type a caller would naturally catch (``ValueError`` for bad values, ``TypeError``
for payloads that are not JSON-compatible, ``RuntimeError`` for misuse of a lifecycle), so code
written against the documented API keeps working::

    JarvisError
    ├── ConfigError (ValueError)            a config key, env variable or .env line is wrong
    ├── PayloadError (TypeError)            a payload is not JSON-compatible; names the path
    ├── PayloadTooLarge (ValueError)        an encoded message is over the size limit
    ├── MeshError (RuntimeError)            lifecycle misuse: start twice, add after stop, ...
    │   ├── DuplicateAgentError (ValueError) two agents with one agent_id
    │   ├── AgentDefinitionError (TypeError) an agent class lacks a role or has a bad attribute
    │   ├── AgentCrashed                    a run() failed and the policy does not restart it
    │   ├── HostStopped                     the Trio runtime hosting an asyncio program stopped
    │   └── JoinError                       start() could not join the cluster (join_required)
    │       └── NodeNameConflict            a live member at another address has this node's name
    ├── TransportError                      the data channel cannot carry a frame
    │   ├── FrameError (ValueError)         a received frame is malformed (counted, dropped)
    │   └── PeerUnavailable                 no live connection to that node (unknown, gone)
    ├── MailboxError                        mailbox misuse or failure
    │   └── MailboxFull                     the bounded outbox is full; the message is refused
    ├── RedisUnavailable (ConnectionError)  Redis cannot be reached, even after retrying
    ├── StorageError                        blob storage failure
    │   ├── UnsafePathError (ValueError)    a path escapes the storage root
    │   ├── BlobNotFound (FileNotFoundError) no blob under that path
    │   └── BlobTooLarge (ValueError)       a blob is over the storage's size limit
    ├── AuthError                           Nexus authentication failure
    │   ├── NexusNotConfigured (ValueError) no NEXUS_GATEWAY_URL: raised on first use
    │   ├── NexusUnavailable                the gateway cannot be reached, timed out or 5xx
    │   ├── NexusProtocolError              the gateway answered something malformed
    │   ├── ConnectionNotActive             the connection ended FAILED / REVOKED / EXPIRED
    │   └── AuthTimeout (TimeoutError)      the consent was not given in time
    ├── AsyncioMisuseError (RuntimeError)   asyncio-only code ran inside the Trio runtime
    └── AsyncioCallCancelled (RuntimeError) a run_asyncio() call was cancelled on the asyncio side

Errors are raised where bad input enters (config, payloads, frames, HTTP answers, paths) and
name what was wrong there, so a caller never has to decode a ``KeyError`` from deep inside.
"""

from __future__ import annotations


class JarvisError(Exception):
    """Base of every error raised on purpose by jarvis_trio."""


class ConfigError(JarvisError, ValueError):
    """A configuration value is wrong: the message names the key, the value and what was
    expected."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"config {key}={value!r}: expected {expected}")


class PayloadError(JarvisError, TypeError):
    """A message payload is not JSON-compatible.

    ``path`` locates the offending value, for example ``$.items[2].when``.
    """

    def __init__(self, path: str, value: object, reason: str) -> None:
        self.path = path
        self.value = value
        super().__init__(f"payload at {path} is not JSON-compatible: {reason}")


class PayloadTooLarge(JarvisError, ValueError):
    """An encoded message is larger than the configured limit; it was not sent."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")


class MeshError(JarvisError, RuntimeError):
    """The mesh was used in a way its lifecycle does not allow."""


class DuplicateAgentError(MeshError, ValueError):
    """An agent_id is already registered in this mesh."""


class AgentDefinitionError(MeshError, TypeError):
    """An agent class cannot be added: no ``role``, or an attribute of the wrong kind."""


class AgentCrashed(MeshError):
    """An agent's ``run()`` raised and the supervision policy does not restart it."""


class HostStopped(MeshError):
    """The Trio runtime that hosts a mesh for an asyncio program is not running (it was
    stopped, or stopped while the call was in progress): the call did not complete there."""


class JoinError(MeshError):
    """``start()`` could not join the cluster: no seed answered within ``join_timeout`` and
    ``join_required`` is set. The message names the seeds tried and what failed."""


class NodeNameConflict(JoinError):
    """This node's name is held by a live member at another address; the node did not start.

    ``name`` is the name, ``address`` the other member's SWIM ``host:port``.
    """

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        super().__init__(
            f"node name {name!r} is already held by a live member at {address}: "
            "give this node another node_name (JC_NODE_NAME)"
        )


class TransportError(JarvisError):
    """The data channel could not carry a frame."""


class FrameError(TransportError, ValueError):
    """A received frame is malformed; the receiver drops and counts it."""


class PeerUnavailable(TransportError):
    """The data channel has no live connection to that node (never known, or gone)."""

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"no data connection to node {node!r}")


class MailboxError(JarvisError):
    """A mailbox operation failed."""


class MailboxFull(MailboxError):
    """The bounded outbox is full: the message was refused, not queued."""


class RedisUnavailable(JarvisError, ConnectionError):
    """Redis could not be reached; the call was retried with backoff for its whole window."""


class StorageError(JarvisError):
    """A blob storage operation failed."""


class UnsafePathError(StorageError, ValueError):
    """A blob path escapes the storage root (``..``, absolute, or through a symlink)."""


class BlobNotFound(StorageError, FileNotFoundError):
    """No blob is stored under the path that was read."""


class BlobTooLarge(StorageError, ValueError):
    """A blob is larger than the storage's ``max_blob_size``; nothing was written or read."""


class AuthError(JarvisError):
    """Nexus authentication failed."""


class NexusNotConfigured(AuthError, ValueError):
    """Nexus auth was used without a gateway URL (``NEXUS_GATEWAY_URL``)."""


class NexusUnavailable(AuthError):
    """The Nexus gateway could not be reached, did not answer in time, or answered 5xx."""


class NexusProtocolError(AuthError):
    """The Nexus gateway answered with something that does not follow the protocol."""


class ConnectionNotActive(AuthError):
    """The Nexus connection ended in a terminal status instead of ACTIVE."""

    def __init__(self, connection_id: str, status: str) -> None:
        self.connection_id = connection_id
        self.status = status
        super().__init__(f"Nexus connection {connection_id} ended with status {status}")


class AuthTimeout(AuthError, TimeoutError):
    """The Nexus connection did not become ACTIVE within the allowed time."""


class AsyncioMisuseError(JarvisError, RuntimeError):
    """asyncio-only code ran inside the Trio runtime; the message says what to use instead."""


class AsyncioCallCancelled(JarvisError, RuntimeError):
    """The asyncio task of a :func:`~jarvis_trio.run_asyncio` call ended cancelled on the
    asyncio side (its loop shut down, or the library cancelled itself)."""
