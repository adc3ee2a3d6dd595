"""The Redis layout of mailboxes: keys, the consumer group, and the entry format.

One stream per agent, ``jarvis:mbox:{<agent_id>}``, read through the consumer group ``mbox``.
The braces are a Redis Cluster hash tag: every key of one agent hashes to the same slot (only
the part between the braces counts), so a script or multi-key command about one agent always
stays on one node. Braces and ``%`` inside an agent id are percent-escaped, so the tag is the
whole id and no two agents share a key.
Each entry has one field, ``m``: a msgpack array ``[message_id, sender, timestamp, payload
JSON]``, plus a fifth element, the W3C ``traceparent``, when the sender traces (entries
without it read as before). Shared by the writer (:mod:`.redis_backed`) and the reader
(:mod:`.redis_mailbox`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import msgspec

from ._codec import decode_payload
from .contracts import MailboxMessage

__all__ = [
    "APPEND_SCRIPT",
    "FIELD",
    "GROUP",
    "KEY_PREFIX",
    "Held",
    "Outgoing",
    "agent_of",
    "agent_tag",
    "entry_message",
    "id_order",
    "stream_key",
]

log = logging.getLogger("jarvis_trio.mailbox")

GROUP = "mbox"
KEY_PREFIX = "jarvis:mbox:"
FIELD = b"m"

# Appends a batch in one command: one reply to parse instead of one per message. Per-message
# failures (a key of the wrong type) are returned as [index, error, ...] so the rest of the
# batch is still written. EVAL with the source is cached by Redis after the first call.
APPEND_SCRIPT = """
local maxlen, ttl = ARGV[1], ARGV[2]
local refused, touched = {}, {}
for i, key in ipairs(KEYS) do
  local reply = redis.pcall('XADD', key, 'MAXLEN', maxlen, '*', 'm', ARGV[i + 2])
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = i
    refused[#refused + 1] = reply.err
  elseif not touched[key] then
    touched[key] = true
    redis.call('PEXPIRE', key, ttl)
  end
end
return refused
"""


class _Entry(msgspec.Struct, array_like=True, frozen=True):
    message_id: str
    sender: str
    timestamp: float
    data: bytes
    traceparent: str | None = None


_envelope = msgspec.msgpack.Encoder()
_unpack_envelope = msgspec.msgpack.Decoder(_Entry)


def agent_tag(agent_id: str) -> str:
    """``{agent_id}``: the Cluster hash tag shared by every key of one agent."""
    escaped = agent_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + escaped + "}"


def stream_key(agent_id: str) -> str:
    """The Redis key of an agent's mailbox stream (hash-tagged by agent)."""
    return KEY_PREFIX + agent_tag(agent_id)


def agent_of(key: str) -> str:
    """The agent id a mailbox key belongs to (for log lines)."""
    tag = key.removeprefix(KEY_PREFIX)
    inner = tag[1:-1] if tag.startswith("{") and tag.endswith("}") else tag
    return inner.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")


class Outgoing:
    """A message waiting in the outbox, already in its stream-entry form."""

    __slots__ = ("envelope", "key", "message_id")

    def __init__(
        self, key: str, message_id: str, sender: str, data: bytes, traceparent: str | None = None
    ) -> None:
        self.key = key
        self.message_id = message_id
        fields: tuple[object, ...] = (message_id, sender, time.time(), data)
        if traceparent is not None:
            fields += (traceparent,)
        self.envelope = _envelope.encode(fields)


class Held:
    """A message this mailbox holds (prefetched or claimed): its stream id, the message as
    handed out, and the payload as stored, to hand out a fresh copy after a nack."""

    __slots__ = ("data", "message", "stream_id")

    def __init__(self, stream_id: bytes, message: MailboxMessage, data: bytes) -> None:
        self.stream_id = stream_id
        self.message = message
        self.data = data


def entry_message(
    target: str, stream_id: bytes, fields: Mapping[bytes, bytes], count: int
) -> Held | None:
    """Turn a stream entry into a message; ``None`` (logged) for an entry that is not ours."""
    try:
        entry = _unpack_envelope.decode(fields[FIELD])
        data = entry.data
        message = MailboxMessage(
            message_id=entry.message_id,
            sender=entry.sender or None,
            target=target,
            payload=decode_payload(data),
            timestamp=entry.timestamp,
            delivery_count=count,
            traceparent=entry.traceparent,
        )
    except (KeyError, ValueError, TypeError, msgspec.MsgspecError) as error:
        log.error("mailbox entry %r of %s is malformed (%s); dropped", stream_id, target, error)  # noqa: TRY400
        return None
    return Held(stream_id, message, data)


def id_order(stream_id: bytes) -> tuple[int, int]:
    ms, _, seq = stream_id.partition(b"-")
    return int(ms), int(seq or 0)
