"""The fuzzer of ``bench_swim_fuzz``: a separate process that floods a live cluster.

``python -m benchmarks.swim_fuzzer SPEC.json`` reads the targets, the captured traffic to
mutate, the members' names and versions and (optionally) the cluster key, sends ``count``
datagrams paced at ``rate`` per second (so the kernel's socket buffers do not just drop the
excess) and stops at ``count`` or after ``seconds``, whichever comes first. It prints one
JSON line: how many it sent, and of which kind.

Each datagram is one of: a captured datagram mutated (bytes flipped or set to extreme values,
cut, extended, spliced with another), a well-formed datagram generated with extreme field
values (versions at the last incarnation and epoch, sequence numbers at 2**32 - 1, ports at
65535, directory versions at 2**64 - 1, names of 255 bytes), or random bytes. With a key,
half are sealed with it (a member gone rogue), half are not (an outsider).
"""

from __future__ import annotations

import json
import random
import socket
import sys
import time
from collections import Counter
from typing import Any

from jarvis_trio.swim import codec
from jarvis_trio.swim.keyring import TAG_SIZE, Keyring
from jarvis_trio.swim.members import MAX_INC, MAX_VERSION, MemberState, NodeMeta

_EXTREME_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


class Generator:
    """Datagrams from a seeded RNG; ``spec`` as written by the benchmark."""

    def __init__(self, spec: dict[str, Any], rng: random.Random) -> None:
        self.rng = rng
        key = spec.get("key")
        self.keyring = Keyring([key], spec.get("cluster_name", "jarvis")) if key else None
        captured = [bytes.fromhex(h) for h in spec["captured"]]
        if self.keyring is not None:  # mutate the bodies; sealing comes last
            captured = [d[:-TAG_SIZE] for d in captured if len(d) > TAG_SIZE]
        self.captured = captured or [codec.HEADER_GOSSIP + b"\x00"]
        self.names = [*spec["names"], "x" * 255, "é" * 127, "ghost"]
        self.versions = [
            0,
            1,
            MAX_INC,
            MAX_VERSION,
            MAX_VERSION - 1,
            *spec["versions"],
            *(v + 1 for v in spec["versions"]),
            *(v | MAX_INC for v in spec["versions"]),
        ]
        self.kinds: Counter[str] = Counter()

    # -- well-formed, extreme -----------------------------------------------------------
    def _u32(self) -> int:
        rng = self.rng
        return rng.choice((0, 1, 2**31, MAX_INC)) if rng.random() < 0.5 else rng.getrandbits(32)

    def _version(self) -> int:
        rng = self.rng
        return rng.choice(self.versions) if rng.random() < 0.8 else rng.getrandbits(95)

    def _name8(self) -> bytes:
        return codec.encode_name(self.rng.choice(self.names))

    def _meta8(self) -> bytes:
        rng = self.rng
        meta = NodeMeta(
            rng.choice(("127.0.0.1", "10.255.255.255", "::1", "fe80::1")),
            rng.choice((1, 65535, rng.randrange(1, 65536))),
            rng.choice((0, 65535)),
            rng.randbytes(rng.choice((0, 32, 40, 255))),
            rng.choice((0, 2**64 - 1, rng.getrandbits(64))),
        )
        return codec.encode_meta(meta)

    def _update(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(4)
        name8, ver = self._name8(), self._version()
        if kind == 0:
            return codec.encode_alive(name8, ver, self._meta8())
        if kind == 1:
            return codec.encode_suspect(name8, ver, self._name8())
        if kind == 2:
            return codec.encode_dead(name8, ver, self._name8())
        return codec.encode_left(name8, ver)

    def well_formed(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 5:
            records = [
                codec.encode_full(
                    rng.choice(list(MemberState)), self._name8(), self._version(), self._meta8()
                )
                for _ in range(rng.randrange(1, 6))
            ]
            flags = rng.choice((0, codec.FLAG_REPLY, codec.FLAG_FIRST))
            return codec.header_pushpull(flags, self._name8(), len(records)) + b"".join(records)
        if kind == 0:
            header = codec.header_ping(self._u32(), self._name8())
        elif kind == 1:
            header = codec.header_seq(codec.ACK, self._u32())
        elif kind == 2:
            header = codec.header_seq(codec.NACK, self._u32())
        elif kind == 3:
            # relay targets stay on loopback: the benchmark never sends off this machine
            address = codec.encode_address("127.0.0.1", rng.choice((1, 9, 65535)))
            header = codec.header_ping_req(self._u32(), address, self._name8())
        else:
            header = codec.HEADER_GOSSIP
        updates = [self._update() for _ in range(rng.randrange(0, 6))]
        return header + bytes((len(updates),)) + b"".join(updates)

    # -- mutated --------------------------------------------------------------------------
    def mutated(self) -> bytes:
        rng = self.rng
        data = bytearray(rng.choice(self.captured) if rng.random() < 0.7 else self.well_formed())
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(5)
            if not data:
                data += rng.randbytes(8)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[at] = rng.choice(_EXTREME_BYTES)
            elif op == 2:
                del data[at:]
            elif op == 3:
                data[at:at] = rng.randbytes(rng.randrange(1, 16))
            else:
                other = rng.choice(self.captured)
                data[at:] = other[rng.randrange(len(other)) :]
        return bytes(data)

    def next(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            kind, data = "mutated", self.mutated()
        elif roll < 0.9:
            kind, data = "extreme", self.well_formed()
        else:
            kind, data = "random", rng.randbytes(rng.randrange(0, 1400))
        if self.keyring is not None and rng.random() < 0.5:
            kind += "+sealed"
            data = self.keyring.seal(data)
        self.kinds[kind] += 1
        return data


def main(path: str) -> None:
    with open(path) as file:
        spec = json.load(file)
    rng = random.Random(spec["seed"])
    gen = Generator(spec, rng)
    targets = [tuple(t) for t in spec["targets"]]
    count, rate, seconds = spec["count"], spec["rate"], spec["seconds"]
    batch = 200
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sent = errors = 0
    start = time.monotonic()
    while sent < count and time.monotonic() - start < seconds:
        for _ in range(min(batch, count - sent)):
            try:
                sock.sendto(gen.next(), targets[sent % len(targets)])
            except OSError:
                errors += 1
            sent += 1
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    elapsed = time.monotonic() - start
    print(json.dumps({"sent": sent, "errors": errors, "seconds": elapsed, "kinds": gen.kinds}))


if __name__ == "__main__":
    main(sys.argv[1])
