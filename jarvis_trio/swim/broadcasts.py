"""The piggyback queue: which membership updates ride on the next datagram.

Infection-style dissemination (SWIM §4.1): every update is retransmitted a limited number of
times, ``λ·⌈log10(n+1)⌉``, and each datagram carries as many as fit. Order is *least
transmitted first, newest first among equals*, so fresh news overtakes old news and no update
starves. A newer update about a member replaces the queued one (there is never more than one
entry per member).

Implementation: a binary heap keyed by ``(transmits, -id)``; superseded entries are marked dead
and skipped lazily, and the heap is rebuilt when the dead outnumber the live. Choosing updates
for a datagram costs ``O(taken · log q)``; entries too big for the remaining space are set
aside and put back, scanning at most :data:`_SKIP_LIMIT` of them.

Bound: at most ``max_entries`` live entries (4,096 by default). When full, the entry that has
been sent the most (the oldest among those) is dropped first; push/pull anti-entropy repairs
whatever the drop loses.
"""

from __future__ import annotations

import heapq
from math import ceil, log10

__all__ = ["BroadcastQueue", "retransmit_limit"]

_SKIP_LIMIT = 8
_MIN_UPDATE = 7  # smallest encoded update (LEFT with a 1-byte name)


def retransmit_limit(mult: int, n: int) -> int:
    """How many times an update is sent in a cluster of ``n`` members: ``mult·⌈log10(n+1)⌉``."""
    return mult * max(1, ceil(log10(n + 1)))


class _Entry:
    __slots__ = ("data", "id", "key", "live", "transmits")

    def __init__(self, key: str, data: bytes, ident: int) -> None:
        self.key = key
        self.data = data
        self.id = ident
        self.transmits = 0
        self.live = True


class BroadcastQueue:
    """Bounded queue of encoded updates, one per member name."""

    __slots__ = ("_by_key", "_heap", "_next_id", "max_entries")

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._heap: list[tuple[int, int, _Entry]] = []
        self._by_key: dict[str, _Entry] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def transmits(self, key: str) -> int | None:
        """How often the queued update about ``key`` was sent, or ``None`` if none is queued."""
        entry = self._by_key.get(key)
        return None if entry is None else entry.transmits

    def push(self, key: str, data: bytes) -> None:
        """Queue ``data`` (an encoded update about member ``key``), replacing an older one."""
        old = self._by_key.get(key)
        if old is not None:
            old.live = False
        self._next_id += 1
        entry = _Entry(key, data, self._next_id)
        self._by_key[key] = entry
        heapq.heappush(self._heap, (0, -entry.id, entry))
        if len(self._by_key) > self.max_entries:
            self._evict()
        elif len(self._heap) > 2 * len(self._by_key) + 64:
            self._compact()

    def drop(self, key: str) -> None:
        """Forget the update about ``key`` (e.g. the member was reaped)."""
        old = self._by_key.pop(key, None)
        if old is not None:
            old.live = False

    def fill(self, budget: int, limit: int, out: list[bytes], max_count: int = 255) -> int:
        """Append to ``out`` updates totalling at most ``budget`` bytes; return bytes used.

        Each chosen update counts one transmission; an update reaching ``limit`` transmissions
        leaves the queue.
        """
        heap = self._heap
        if not heap or budget < _MIN_UPDATE:
            return 0
        used = 0
        taken: list[_Entry] = []
        skipped: list[tuple[int, int, _Entry]] = []
        while heap and len(taken) < max_count and budget - used >= _MIN_UPDATE:
            item = heapq.heappop(heap)
            entry = item[2]
            if not entry.live:
                continue
            size = len(entry.data)
            if used + size > budget:
                skipped.append(item)
                if len(skipped) >= _SKIP_LIMIT:
                    break
                continue
            used += size
            out.append(entry.data)
            taken.append(entry)
        for item in skipped:
            heapq.heappush(heap, item)
        by_key = self._by_key
        for entry in taken:
            entry.transmits += 1
            if entry.transmits >= limit:
                entry.live = False
                if by_key.get(entry.key) is entry:
                    del by_key[entry.key]
            else:
                heapq.heappush(heap, (entry.transmits, -entry.id, entry))
        return used

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if item[2].live]
        heapq.heapify(self._heap)

    def _evict(self) -> None:
        live = [item for item in self._heap if item[2].live]
        live.sort()
        for item in live[self.max_entries :]:
            entry = item[2]
            entry.live = False
            del self._by_key[entry.key]
        self._heap = live[: self.max_entries]
        heapq.heapify(self._heap)
