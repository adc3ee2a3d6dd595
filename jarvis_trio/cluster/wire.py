"""What the cross-node layer puts in envelopes, and how it reads them back.

Agent messages map one to one onto :class:`~jarvis_trio.transport.Envelope` kinds, minus the
sender's node: that is whatever the transport authenticated, and :func:`to_message` takes it
as an argument so that no payload field can ever claim it. Agent directories travel as
``DIRECTORY`` envelopes whose data is checked field by field on arrival (:func:`read_directory`)
-- a peer's list is untrusted input that ends up in every agent's ``discover()``.

Directory versions are 64-bit: a random per-process *epoch* in the high half, the local
directory's change counter in the low half (:func:`published_version`), so that a node that
restarts under the same name never advertises a version its peers already fetched from its
previous life.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from ..peers.directory import PeerInfo
from ..peers.messages import NOTIFY, REQUEST, RESPONSE, IncomingMessage
from ..transport import Envelope, Kind

__all__ = [
    "MAX_REMOTE_AGENTS",
    "DirectoryError",
    "directory_payload",
    "is_newer",
    "new_epoch",
    "published_version",
    "read_directory",
    "to_envelope",
    "to_message",
]

MAX_REMOTE_AGENTS = 10_000  # per node; a longer list is refused as a whole
_MAX_TEXT = 1024  # ids, roles, capabilities
_MAX_DESCRIPTION = 8192

_KIND_OF = {NOTIFY: Kind.NOTIFY, REQUEST: Kind.REQUEST, RESPONSE: Kind.REPLY}
_TYPE_OF = {Kind.NOTIFY: NOTIFY, Kind.REQUEST: REQUEST, Kind.REPLY: RESPONSE}


def to_envelope(message: IncomingMessage) -> Envelope:
    """The envelope carrying an agent message to another node."""
    return Envelope(
        _KIND_OF[message.type],
        message.target,
        message.sender,
        message.correlation_id,
        message.timestamp,
        message.context or None,
        message.data,
        message.traceparent,
    )


def to_message(node: str, envelope: Envelope) -> IncomingMessage | None:
    """The agent message in ``envelope``, sent from ``node`` (the authenticated peer), or
    ``None`` when the envelope is not an agent message or its payload is not an object."""
    kind = _TYPE_OF.get(envelope.kind)
    if kind is None or type(envelope.data) is not dict or not envelope.sender:
        return None
    if kind != NOTIFY and not envelope.correlation_id:
        return None
    return IncomingMessage(
        envelope.sender,
        node,
        kind,
        envelope.data,
        envelope.correlation_id,
        envelope.timestamp,
        envelope.context or {},
        envelope.target,
        envelope.traceparent if envelope.traceparent and len(envelope.traceparent) <= 64 else None,
    )


# -- directories ----------------------------------------------------------------------------
class DirectoryError(ValueError):
    """A peer's directory payload is malformed; it is refused as a whole."""


class _Agent(msgspec.Struct, forbid_unknown_fields=False):
    agent_id: str
    role: str
    capabilities: list[str] = []
    description: str = ""


class _Directory(msgspec.Struct, forbid_unknown_fields=False):
    version: int
    agents: list[_Agent]


def directory_payload(version: int, agents: list[PeerInfo]) -> dict[str, Any]:
    """The ``DIRECTORY`` data for this node's local agents."""
    return {
        "version": version,
        "agents": [
            {
                "agent_id": a.agent_id,
                "role": a.role,
                "capabilities": list(a.capabilities),
                "description": a.description,
            }
            for a in agents
        ],
    }


def read_directory(data: Any) -> tuple[int, list[PeerInfo]]:
    """``(version, agents)`` from a peer's ``DIRECTORY`` data; :class:`DirectoryError` names
    what is wrong with anything else."""
    try:
        parsed = msgspec.convert(data, _Directory)
    except msgspec.ValidationError as exc:
        raise DirectoryError(f"malformed directory: {exc}") from None
    if not 0 <= parsed.version < 1 << 64:
        raise DirectoryError(f"directory version {parsed.version} is not a 64-bit number")
    if len(parsed.agents) > MAX_REMOTE_AGENTS:
        raise DirectoryError(
            f"directory lists {len(parsed.agents)} agents, more than {MAX_REMOTE_AGENTS}"
        )
    seen: set[str] = set()
    agents = []
    for agent in parsed.agents:
        texts = [agent.agent_id, agent.role, *agent.capabilities]
        if not agent.agent_id or not agent.role or any(len(t) > _MAX_TEXT for t in texts):
            raise DirectoryError(f"directory entry {agent.agent_id[:64]!r} has a bad id or role")
        if len(agent.description) > _MAX_DESCRIPTION or agent.agent_id in seen:
            raise DirectoryError(f"directory entry {agent.agent_id[:64]!r} is malformed")
        seen.add(agent.agent_id)
        agents.append(
            PeerInfo(agent.agent_id, agent.role, tuple(agent.capabilities), agent.description)
        )
    return parsed.version, agents


def new_epoch(rng: random.Random | None = None) -> int:
    """A random non-zero 31-bit epoch for this process's directory versions."""
    return (rng or random.SystemRandom()).randrange(1, 1 << 31)


def published_version(epoch: int, local_version: int) -> int:
    """The 64-bit version advertised in SWIM metadata for ``local_version``."""
    return (epoch << 32) | (local_version & 0xFFFF_FFFF)


def is_newer(wanted: int, fetched: int | None) -> bool:
    """Whether the advertised ``wanted`` version needs a fetch after ``fetched``.

    Within one epoch versions only grow; across epochs (a restart) any difference is new.
    """
    if fetched is None:
        return True
    if wanted >> 32 != fetched >> 32:
        return True
    return (wanted & 0xFFFF_FFFF) > (fetched & 0xFFFF_FFFF)
