"""The cluster keyring: several keys verify, one primary key signs (Serf's keyring).

Every SWIM datagram of a keyed cluster ends with a 16-byte tag, HMAC-SHA256 truncated, over
``len(cluster):u8 cluster`` + the datagram: the cluster name is bound into every tag, so two
clusters sharing a key still refuse each other's datagrams. A datagram is accepted when its
tag verifies under *any* installed key; outgoing datagrams are sealed with the *primary* key.

That split is what lets a key rotate without a restart and without a false death. The
operator's sequence, on every node, one step at a time across the cluster:

1. ``install(new)`` everywhere: every node now accepts both keys, still signs with the old;
2. ``use(new)`` everywhere: nodes sign with the new key, which every node already accepts;
3. ``remove(old)`` everywhere: datagrams sealed with the old key are refused from then on.

The keyring is plain data (no I/O, no clock), shared by the protocol core that seals and opens
datagrams and by the node's API that changes it; a change takes effect with the next datagram.
Each change swaps one immutable ``(primary, keys)`` pair, so it is safe from any thread (a
node hosted from asyncio is administered from the loop's thread). Key material never leaves
this object: :meth:`Keyring.list` shows fingerprints only.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256

__all__ = ["MIN_KEY_BYTES", "TAG_SIZE", "KeyInfo", "Keyring", "fingerprint"]

TAG_SIZE = 16
MIN_KEY_BYTES = 16  # the configuration's minimum for ``cluster_key``; same rule here
MAX_KEYS = 16  # a keyring holds a rotation in progress, not an archive
_U8 = struct.Struct(">B")


def _as_bytes(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"a cluster key must be at least {MIN_KEY_BYTES} bytes")
    return raw


def fingerprint(key: str | bytes) -> str:
    """A short public name of a key (first 8 bytes of its SHA-256, hex): safe to log and
    compare between nodes, useless to forge a tag."""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    return sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One installed key as :meth:`Keyring.list` shows it."""

    fingerprint: str
    primary: bool
    verified: int  # datagrams this key has verified since it was installed


class Keyring:
    """Installed cluster keys; the first one given is the primary.

    Raises ``ValueError`` for a key shorter than 16 bytes, a cluster name over 255 UTF-8
    bytes, an unknown key given to :meth:`use` or :meth:`remove`, the removal of the primary
    key, or a 17th key.
    """

    __slots__ = ("_aad", "_state", "_verified", "cluster_name")

    def __init__(self, keys: Iterable[str | bytes], cluster_name: str) -> None:
        aad = cluster_name.encode()
        if len(aad) > 255:
            raise ValueError("cluster_name must be at most 255 UTF-8 bytes")
        self.cluster_name = cluster_name
        self._aad = _U8.pack(len(aad)) + aad
        unique: list[bytes] = []
        for key in keys:
            raw = _as_bytes(key)
            if raw not in unique:
                unique.append(raw)
        if not unique:
            raise ValueError("a keyring needs at least one key")
        if len(unique) > MAX_KEYS:
            raise ValueError(f"a keyring holds at most {MAX_KEYS} keys")
        # (primary, every installed key with the primary first): replaced whole on a change
        self._state: tuple[bytes, tuple[bytes, ...]] = (unique[0], tuple(unique))
        self._verified: dict[bytes, int] = {}  # statistics only; a lost increment is harmless

    # -- administration ---------------------------------------------------------------------
    def install(self, key: str | bytes) -> bool:
        """Accept ``key`` for verification (not for signing). False if already installed."""
        raw = _as_bytes(key)
        primary, keys = self._state
        if raw in keys:
            return False
        if len(keys) >= MAX_KEYS:
            raise ValueError(f"a keyring holds at most {MAX_KEYS} keys; remove one first")
        self._state = (primary, (*keys, raw))
        return True

    def _installed(self, key: str | bytes) -> bytes:
        """The installed key that ``key`` is, or whose fingerprint it is; else ``key`` itself.

        Accepting a fingerprint lets an operator name the key to retire without holding it
        (``jarvis-trio keys remove 1f9137939a822081``); a fingerprint is no secret.
        """
        keys = self._state[1]
        raw = key.encode() if isinstance(key, str) else bytes(key)
        if raw in keys:
            return raw
        named = [k for k in keys if fingerprint(k) == raw.decode("ascii", "replace")]
        return named[0] if named else _as_bytes(raw)

    def use(self, key: str | bytes) -> None:
        """Make an installed key (given as itself or its fingerprint) the primary: every
        datagram from now on is sealed with it."""
        raw = self._installed(key)
        _, keys = self._state
        if raw not in keys:
            raise ValueError(f"key {fingerprint(raw)} is not installed; install it first")
        self._state = (raw, (raw, *(k for k in keys if k != raw)))

    def remove(self, key: str | bytes) -> bool:
        """Stop accepting ``key`` (itself or its fingerprint). False if it was not installed;
        the primary cannot go."""
        raw = self._installed(key)
        primary, keys = self._state
        if raw not in keys:
            return False
        if raw == primary:
            raise ValueError(
                f"key {fingerprint(raw)} is the primary key: make another key primary first"
            )
        self._state = (primary, tuple(k for k in keys if k != raw))
        self._verified.pop(raw, None)
        return True

    def list(self) -> list[KeyInfo]:
        """Installed keys, primary first, as fingerprints."""
        primary, keys = self._state
        verified = self._verified
        return [KeyInfo(fingerprint(k), k == primary, verified.get(k, 0)) for k in keys]

    @property
    def primary_fingerprint(self) -> str:
        """Fingerprint of the key outgoing datagrams are sealed with."""
        return fingerprint(self._state[0])

    def __len__(self) -> int:
        return len(self._state[1])

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary_fingerprint}, keys={len(self)})"

    # -- sealing ----------------------------------------------------------------------------
    def _tag(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, self._aad + data, sha256).digest()[:TAG_SIZE]

    def seal(self, data: bytes) -> bytes:
        """``data`` + its tag under the primary key."""
        return data + self._tag(self._state[0], data)

    def open(self, data: bytes) -> bytes | None:
        """The datagram without its tag, or ``None`` if no installed key verifies it.

        The primary is tried first (the steady state); during a rotation a datagram costs at
        most one HMAC per installed key.
        """
        if len(data) < TAG_SIZE + 2:
            return None
        body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        verified = self._verified
        for key in self._state[1]:  # the primary first
            if hmac.compare_digest(tag, self._tag(key, body)):
                verified[key] = verified.get(key, 0) + 1
                return body
        return None
