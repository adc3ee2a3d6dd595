"""Dead letters in Redis: one stream per agent, ``jarvis:dlq:{<agent_id>}`` (the agent's hash
tag, so that it lives in the same Redis Cluster slot as the agent's mailbox stream and one
script can move a message from one to the other).

A message whose handler failed ``max_deliveries`` times -- it raised each time, or the process
died while handling it -- is moved here atomically: ``XADD`` to the dead-letter stream
(capped at ``dead_letter_size``, oldest trimmed) with ``XACK`` + ``XDEL`` from the mailbox
stream (one Lua script), so at every moment the message is in exactly one of the two: nothing
is acknowledged unless it was handled or dead-lettered. Each entry has one field, ``d``: a
msgpack array ``[message_id, sender, timestamp, payload JSON, deliveries, error, error_type,
failed_at]``.

Everything here runs in a worker thread (:meth:`jarvis_trio._redis.RedisClient.run`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import redis

from ._codec import decode_payload
from ._stream import GROUP, agent_tag
from .contracts import DeadLetter

__all__ = ["DEAD_PREFIX", "bury", "dead_key", "delete_dead", "read_dead"]

log = logging.getLogger("jarvis_trio.mailbox")

DEAD_PREFIX = "jarvis:dlq:"
_FIELD = b"d"

# One script, so the move is atomic -- also on Redis Cluster, where both keys carry the
# agent's hash tag and so live in one slot. KEYS: dead-letter stream, mailbox stream;
# ARGV: retention, stream id, record.
_BURY = (
    """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[3])
redis.call('XACK', KEYS[2], '"""
    + GROUP
    + """', ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return 1
"""
)
_Record = tuple[str, str, float, bytes, int, str, str, float]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Record).decode


def dead_key(agent_id: str) -> str:
    """The Redis key of an agent's dead-letter stream."""
    return DEAD_PREFIX + agent_tag(agent_id)


def bury(
    r: redis.Redis,
    *,
    agent_id: str,
    stream: str,
    stream_id: bytes,
    message_id: str,
    sender: str | None,
    timestamp: float,
    data: bytes,
    deliveries: int,
    error: str,
    error_type: str,
    maxlen: int,
) -> None:
    """Move one pending message of ``stream`` to the dead-letter stream, atomically."""
    record = _encode(
        (message_id, sender or "", timestamp, data, deliveries, error, error_type, time.time())
    )
    client: Any = r
    client.eval(_BURY, 2, dead_key(agent_id), stream, maxlen, stream_id, record)
    log.warning(
        "mailbox message %s to %s moved to the dead-letter stream after %d deliveries: %s: %s",
        message_id,
        agent_id,
        deliveries,
        error_type,
        error,
    )


def _letter(agent_id: str, dead_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter | None:
    try:
        message_id, sender, ts, data, deliveries, error, error_type, failed_at = _decode(
            fields[_FIELD]
        )
        payload = decode_payload(data)
    except (KeyError, ValueError, TypeError, msgspec.MsgspecError) as exc:
        log.error("dead letter %r of %s is malformed (%s); skipped", dead_id, agent_id, exc)  # noqa: TRY400
        return None
    return DeadLetter(
        dead_id=dead_id.decode(),
        message_id=message_id,
        sender=sender or None,
        target=agent_id,
        payload=payload,
        timestamp=ts,
        deliveries=deliveries,
        error=error,
        error_type=error_type,
        failed_at=failed_at,
    )


def read_dead(
    r: redis.Redis, agent_id: str, limit: int, dead_id: str | None = None
) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``agent_id``, oldest first (only ``dead_id`` if given)."""
    low, high = (dead_id, dead_id) if dead_id is not None else ("-", "+")
    try:
        entries: Any = r.xrange(dead_key(agent_id), min=low, max=high, count=limit)
    except redis.exceptions.ResponseError:  # a malformed id: there is no such letter
        return []
    letters = (_letter(agent_id, entry_id, fields) for entry_id, fields in entries)
    return [letter for letter in letters if letter is not None]


def delete_dead(r: redis.Redis, agent_id: str, dead_ids: list[str] | None) -> int:
    """Delete the named dead letters of ``agent_id`` (all with ``None``); how many."""
    key = dead_key(agent_id)
    if dead_ids is None:
        count = int(r.xlen(key))
        r.delete(key)
        return count
    if not dead_ids:
        return 0
    try:
        return int(r.xdel(key, *dead_ids))
    except redis.exceptions.ResponseError:
        return 0
