"""MockBlobStorage and MockMailbox: in-memory services with the real ones' signatures.

They keep the real semantics that agents depend on (blob names never collide silently, a
missing blob raises :class:`~jarvis_trio.errors.BlobNotFound`, mailbox payloads are checked as
JSON, a claimed message is redelivered after ``nack``) and record what the agent did.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import posixpath
import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import trio

from ...errors import BlobNotFound, StorageError
from ...mailbox._common import buried, error_fields
from ...mailbox.contracts import DeadLetter, MailboxMessage
from ...payload import checked_copy
from ...storage.blob import DEFAULT_LIST_LIMIT

__all__ = ["MockBlobStorage", "MockMailbox"]


def _name(path: str) -> str:
    clean = posixpath.normpath(path.replace("\\", "/")).lstrip("/")
    if not path or clean.startswith("..") or clean in (".", ""):
        raise StorageError(f"blob path {path!r} escapes the storage root")
    return clean


class MockBlobStorage:
    """Blobs in a dict. ``blobs`` maps name → bytes; ``saved`` lists names in save order."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.saved: builtins.list[str] = []

    @property
    def location(self) -> str:
        """Where the blobs live (here: nowhere but memory)."""
        return "memory://"

    async def save(self, path: str, data: str | bytes, *, overwrite: bool = False) -> str:
        """Store ``data``; without ``overwrite`` a taken name becomes ``stem-N.suffix``."""
        await trio.lowlevel.checkpoint()
        name = _name(path)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if not overwrite and name in self.blobs:
            stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
            n = 2
            while f"{stem}-{n}{dot}{suffix}" in self.blobs:
                n += 1
            name = f"{stem}-{n}{dot}{suffix}"
        self.blobs[name] = payload
        self.saved.append(name)
        return name

    async def read(self, path: str) -> bytes:
        """The bytes at ``path``; :class:`BlobNotFound` if there are none."""
        await trio.lowlevel.checkpoint()
        name = _name(path)
        if name not in self.blobs:
            raise BlobNotFound(f"no blob at {name!r}")
        return self.blobs[name]

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The blob at ``path`` decoded as text."""
        return (await self.read(path)).decode(encoding)

    async def exists(self, path: str) -> bool:
        """True when a blob is stored at ``path``."""
        await trio.lowlevel.checkpoint()
        return _name(path) in self.blobs

    async def delete(self, path: str) -> bool:
        """Remove the blob at ``path``; True if one was removed."""
        await trio.lowlevel.checkpoint()
        return self.blobs.pop(_name(path), None) is not None

    async def list(self, prefix: str = "", *, limit: int = DEFAULT_LIST_LIMIT) -> list[str]:
        """Sorted names starting with ``prefix``; more than ``limit`` is a StorageError."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        await trio.lowlevel.checkpoint()
        found = sorted(name for name in self.blobs if name.startswith(prefix))
        if len(found) > limit:
            raise StorageError(f"more than {limit} blobs start with {prefix!r}")
        return found

    def assert_saved(self, prefix: str, content: str | bytes | None = None) -> str:
        """A blob whose name starts with ``prefix`` was saved (containing ``content``)."""
        want = content.encode() if isinstance(content, str) else content
        for name in self.saved:
            if name.startswith(prefix) and (want is None or want in self.blobs.get(name, b"")):
                return name
        raise AssertionError(f"no blob saved under {prefix!r}; saved: {self.saved or 'none'}")

    def __repr__(self) -> str:
        return f"<MockBlobStorage {len(self.blobs)} blobs>"


class MockMailbox:
    """An agent's mailbox in memory: ``sent`` records :meth:`send`; :meth:`deliver` queues a
    message for :meth:`receive`; ``acked``, ``nacked`` and ``failed`` record what the agent
    settled; ``buried`` holds the dead letters.

    :meth:`fail` follows the real rule (delivered again until ``max_deliveries``, then a dead
    letter) without the backoff, so a test sees the redelivery at its next ``receive``.
    """

    def __init__(self, agent_id: str = "agent-under-test", *, max_deliveries: int = 5) -> None:
        self.agent_id = agent_id
        self.max_deliveries = max_deliveries
        self.sent: builtins.list[tuple[str, dict[str, Any]]] = []
        self.acked: builtins.list[MailboxMessage] = []
        self.nacked: builtins.list[MailboxMessage] = []
        self.failed: builtins.list[tuple[MailboxMessage, str]] = []
        self.buried: builtins.list[DeadLetter] = []
        self._waiting: deque[MailboxMessage] = deque()
        self._arrived = trio.Event()

    def deliver(
        self, payload: Mapping[str, Any], *, sender: str | None = "peer-0"
    ) -> MailboxMessage:
        """Queue ``payload`` for this agent, as another agent's ``send`` would."""
        message = MailboxMessage(
            f"mock-{secrets.token_hex(6)}",
            sender,
            self.agent_id,
            checked_copy(payload),
            time.time(),
        )
        self._waiting.append(message)
        self._arrived.set()
        return message

    def send(self, target_id: str, message: Mapping[str, Any]) -> str:
        """Record ``message`` for ``target_id``; returns its id."""
        self.sent.append((target_id, checked_copy(message)))
        return f"mock-{secrets.token_hex(6)}"

    async def receive(self, timeout: float | None = None) -> MailboxMessage | None:
        """Claim the next delivered message (``timeout=0``: no wait, ``None``: forever)."""
        if not self._waiting and timeout != 0:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                while not self._waiting:
                    self._arrived = trio.Event()
                    await self._arrived.wait()
        await trio.lowlevel.checkpoint()
        return self._waiting.popleft() if self._waiting else None

    async def ack(self, message: MailboxMessage) -> None:
        """Record the acknowledgement."""
        await trio.lowlevel.checkpoint()
        self.acked.append(message)

    async def nack(self, message: MailboxMessage) -> None:
        """Give the message back: it is delivered again, its delivery count raised."""
        await trio.lowlevel.checkpoint()
        self.nacked.append(message)
        self._again(message)

    async def fail(self, message: MailboxMessage, error: BaseException | str) -> bool:
        """Record the failure; deliver the message again, or bury it once it was delivered
        ``max_deliveries`` times (then ``True``)."""
        await trio.lowlevel.checkpoint()
        text, kind = error_fields(error)
        self.failed.append((message, text))
        if message.delivery_count < self.max_deliveries:
            self._again(message)
            return False
        self.buried.append(buried(message, f"dead-{len(self.buried) + 1}", text, kind))
        return True

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The buried messages, oldest first."""
        await trio.lowlevel.checkpoint()
        return self.buried[:limit]

    def _again(self, message: MailboxMessage) -> None:
        again = dataclasses.replace(message, delivery_count=message.delivery_count + 1)
        self._waiting.appendleft(again)
        self._arrived.set()

    async def read(self, limit: int = 100) -> list[MailboxMessage]:
        """Claim up to ``limit`` waiting messages without waiting."""
        await trio.lowlevel.checkpoint()
        out: builtins.list[MailboxMessage] = []
        while self._waiting and len(out) < limit:
            out.append(self._waiting.popleft())
        return out

    async def peek(self) -> MailboxMessage | None:
        """The next waiting message, without claiming it."""
        await trio.lowlevel.checkpoint()
        return self._waiting[0] if self._waiting else None

    def assert_sent(self, target_id: str, message: Mapping[str, Any] | None = None) -> None:
        """A message to ``target_id`` (containing the given items) was sent."""
        for target, payload in self.sent:
            if target == target_id and all(payload.get(k) == v for k, v in (message or {}).items()):
                return
        raise AssertionError(f"no mailbox message to {target_id!r}; sent: {self.sent or 'none'}")

    def __repr__(self) -> str:
        return f"<MockMailbox {self.agent_id} sent={len(self.sent)} waiting={len(self._waiting)}>"
