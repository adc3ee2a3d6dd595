"""Question: does a live 3-node SWIM cluster survive 10**6 hostile datagrams?

Three real nodes on loopback UDP (the LAN profile: 1 s period), in this process; a separate
fuzzer process (:mod:`benchmarks.swim_fuzzer`) sends them mutated captures of their own
traffic, well-formed datagrams with extreme field values and random bytes, round-robin,
paced so that the nodes (not the kernel buffers) see them. Once without a key, once with a
key (half the datagrams sealed with it: what a rogue member can send). Reported per run:

* crashes: exceptions that reached the driver's last line, plus node tasks that died;
* false deaths: members still not alive everywhere 30 periods after the flood (target 0), and
  *dead* or *left* events about any of the three during it, with the longest outage (a forged
  but well-formed *dead* or *left* record carrying a member's current version is checked
  before it is believed, and the live member answers the check -- see the README's security
  section for what a key holder, or anyone without a key, can do);
* RSS growth of this process from after a warm-up flood (a tenth of the count, which fills
  the bounded caches) to after the flood, and CPU seconds the nodes spent per 10**5
  datagrams handled.

``python -m benchmarks --only bench_swim_fuzz [--quick]`` or ``python -m
benchmarks.bench_swim_fuzz [--quick] [--trace-memory]``; quick sends 10**5 per run. Each run is
bounded in time (the fuzzer stops at its count or its time limit) and stops by itself.
``--trace-memory`` runs the flood under :mod:`tracemalloc` and prints, on stderr, the source
lines whose live allocations grew the most during it: where RSS growth comes from (slower;
its figures are for diagnosis, not for the table). ``--blind`` runs the nodes with
``SwimConfig(check_claims=False)``, SWIM's blind belief in *dead* and *left* records, for
comparison. ``--default-buffer`` runs them with ``SwimConfig(recv_buffer=None)``, the kernel's
default receive buffer, for comparison: the kernel then drops datagrams, genuine ones among
them, whenever the process falls behind (the "dropped by the kernel" figure).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from jarvis_trio.bench.results import Result
from jarvis_trio.swim import (
    EventKind,
    MembershipEvent,
    MemberState,
    SwimConfig,
    SwimNode,
    open_swim_node,
)

KEY = b"the-benchmark-cluster-secret-0123"
NAMES = ["n0", "n1", "n2"]
RATE = 5_000  # datagrams per second, all nodes together: what 3 nodes on 2 loaded cores take
_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    sent: int
    handled: int
    crashes: int
    stuck: int
    false_deaths: int
    longest_outage: float
    suspicions: int
    phantom_suspicions: int
    phantoms: int
    stuck_at_end: int
    recovery: float
    rss_growth_mb: float
    cpu_per_100k: float
    seconds: float
    refused: int
    claims_disproved: int
    verdicts: str
    kernel_drops: int
    recv_buffer: int


def _kernel_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped at these local UDP ports (buffer full): the ``drops``
    column of /proc/net/udp{,6}. A node never sees these, so its own counters cannot."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as file:
                lines = file.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[-1])
    return total


def _rss_mb() -> float:
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * 4096 / 2**20


def _print_growth(before: tracemalloc.Snapshot, label: str) -> None:
    """The 15 source lines whose live allocations grew most since ``before`` (stderr)."""
    after = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    growth = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in growth)
    print(
        f"tracemalloc, {label}: {total / 2**20:+.2f} MiB live since the flood began",
        file=sys.stderr,
    )
    for stat in growth[:15]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+8d} blocks  "
            f"{frame.filename.rsplit('/', 2)[-2:]}:{frame.lineno}",
            file=sys.stderr,
        )


async def _flood(
    count: int,
    key: bytes | None,
    seed: int,
    trace: bool = False,
    check_claims: bool = True,
    default_buffer: bool = False,
) -> Outcome:
    config = SwimConfig(check_claims=check_claims)
    if default_buffer:
        config = config.scaled(recv_buffer=None)
    events: list[tuple[float, str, MembershipEvent]] = []
    phantom_suspicions = [0]
    crashes = 0
    captured: list[bytes] = []
    nodes: list[SwimNode] = []

    async def keep(node_started: trio.Event, name: str, seeds: list[tuple[str, int]]) -> None:
        nonlocal crashes
        try:
            async with open_swim_node(
                name=name,
                bind=("127.0.0.1", 0),
                seeds=seeds,
                config=config,
                cluster_key=key,
                rng=random.Random(seed + len(nodes)),
            ) as node:
                nodes.append(node)
                sub = node.subscribe(maxlen=100_000)
                node_started.set()
                async for event in sub:  # only the live members' (phantoms come and go)
                    if event.member.name in NAMES:
                        events.append((trio.current_time(), name, event))
                    elif event.kind is EventKind.SUSPECT:
                        phantom_suspicions[0] += 1
        except Exception:  # a node that dies is what this question counts
            crashes += 1
            node_started.set()

    async with trio.open_nursery() as nursery:
        for name in NAMES:
            started = trio.Event()
            seeds = [nodes[0].address] if nodes else []
            nursery.start_soon(keep, started, name, seeds)
            await started.wait()
        with trio.fail_after(30):
            for node in nodes:
                await node.wait_until(lambda n=node: len(n.alive_members()) == 3)  # type: ignore[misc]
        # capture a few seconds of the cluster's own traffic: the fuzzer mutates it
        proto = nodes[0].protocol
        real = proto.handle_datagram

        def tap(data: bytes, addr: tuple[str, int], now: float) -> object:
            if len(captured) < 500:
                captured.append(data)
            return real(data, addr, now)

        proto.handle_datagram = tap  # type: ignore[assignment,method-assign]
        with trio.fail_after(30):
            await nodes[0].wait_until(lambda: len(captured) >= 24)
        proto.handle_datagram = real  # type: ignore[method-assign]
        spec = {
            "seed": seed + 1,
            "targets": [list(n.address) for n in nodes],
            "captured": [d.hex() for d in captured],
            "names": NAMES,
            "versions": [n.protocol.version for n in nodes],
            "key": None if key is None else key.decode(),
            "count": count // 10,
            "rate": RATE,
            "seconds": count / RATE * 2 + 60,
        }
        await _fuzz(spec)  # warm-up: the bounded caches fill, the allocator settles
        # the members refuted the warm-up's claims: forge at their versions of now again
        spec.update(seed=seed, count=count, versions=[n.protocol.version for n in nodes])
        handled_before = sum(n.protocol.rx_datagrams for n in nodes)
        refused_before = sum(n.protocol.rejected for n in nodes)
        disproved_before = sum(n.stats().get("claims_disproved", 0) for n in nodes)
        verdicts_before = [_verdicts(n) for n in nodes]
        events.clear()
        phantom_suspicions[0] = 0
        if trace:
            tracemalloc.start()
            traced_from = tracemalloc.take_snapshot()
        ports = {n.address[1] for n in nodes}
        drops_before = _kernel_drops(ports)
        rss_before = _rss_mb()
        cpu_before = time.process_time()
        report = await _fuzz(spec)
        if trace:
            _print_growth(traced_from, "no key" if key is None else "with key")
            tracemalloc.stop()
        cpu = time.process_time() - cpu_before
        kernel_drops = _kernel_drops(ports) - drops_before
        flood_over = trio.current_time()
        handled = sum(n.protocol.rx_datagrams for n in nodes) - handled_before
        refused = sum(n.protocol.rejected for n in nodes) - refused_before
        disproved = sum(n.stats().get("claims_disproved", 0) for n in nodes) - disproved_before
        verdicts = [
            (a - b, c - d)
            for (a, c), (b, d) in zip([_verdicts(n) for n in nodes], verdicts_before, strict=True)
        ]
        live = (MemberState.ALIVE, MemberState.SUSPECT)

        def stuck_now() -> int:
            return sum(1 for n in nodes for x in NAMES if n.protocol.state_of(x) not in live)

        stuck_at_end = stuck_now()
        # what the flood set in motion (forged deaths, refutations) settles within periods
        with trio.move_on_after(30 * config.period):
            for node in nodes:
                await node.wait_until(lambda: stuck_now() == 0)
        recovery = trio.current_time() - flood_over
        rss_growth = _rss_mb() - rss_before
        crashes += sum(n.stats().get("handler_errors", 0) for n in nodes)
        stuck = stuck_now()
        phantoms = max(len(n.protocol.members()) for n in nodes) - len(NAMES)
        nursery.cancel_scope.cancel()
    bad = {EventKind.DEAD, EventKind.LEFT}
    down: dict[tuple[str, str], float] = {}
    outages: list[float] = []
    false_deaths = 0
    for when, observer, event in events:
        who = (observer, event.member.name)
        if event.kind in bad and event.member.name in NAMES:
            false_deaths += 1
            down.setdefault(who, when)
        elif event.kind is EventKind.JOIN and who in down:
            outages.append(when - down.pop(who))
    return Outcome(
        sent=report["sent"],
        handled=handled,
        crashes=crashes,
        stuck=stuck,
        false_deaths=false_deaths,
        longest_outage=max(outages, default=0.0),
        suspicions=sum(1 for _, _, e in events if e.kind is EventKind.SUSPECT),
        phantom_suspicions=phantom_suspicions[0],
        phantoms=phantoms,
        stuck_at_end=stuck_at_end,
        recovery=recovery,
        rss_growth_mb=rss_growth,
        cpu_per_100k=cpu / max(handled, 1) * 100_000,
        seconds=report["seconds"],
        refused=refused,
        claims_disproved=disproved,
        verdicts=", ".join(f"{n} {d}/{c}" for n, (d, c) in zip(NAMES, verdicts, strict=True)),
        kernel_drops=kernel_drops,
        recv_buffer=min(n.stats().get("recv_buffer", 0) for n in nodes),
    )


def _verdicts(node: SwimNode) -> tuple[int, int]:
    """(deaths declared by the node's own suspicion timeouts, claims it confirmed)."""
    stats = node.stats()
    return stats.get("declared_dead", 0), stats.get("claims_confirmed", 0)


async def _fuzz(spec: dict[str, object]) -> dict[str, Any]:
    """Run the fuzzer process on ``spec``; its report."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(spec, file)
    try:
        fuzzer = await trio.run_process(
            [sys.executable, "-m", "benchmarks.swim_fuzzer", file.name],
            capture_stdout=True,
            cwd=_ROOT,
        )
    finally:
        await trio.Path(file.name).unlink()
    report: dict[str, Any] = json.loads(fuzzer.stdout.decode().strip().splitlines()[-1])
    return report


def _results(outcome: Outcome, label: str) -> list[Result]:
    o = outcome
    share = o.handled / max(o.sent, 1)
    note = (
        f"{o.sent:,} sent in {o.seconds:.0f} s, {o.handled:,} handled ({share:.0%}), "
        f"{o.refused:,} refused as bad input, {o.suspicions} suspicions of live members; "
        f"{o.kernel_drops:,} dropped by the kernel (receive buffers of "
        f"{o.recv_buffer / 2**20:.2f} MiB full)"
    )
    return [
        Result(f"SWIM fuzz {label}: crashes", o.crashes, "", "0", o.crashes == 0, note),
        Result(
            f"SWIM fuzz {label}: live members still out 30 periods after",
            o.stuck,
            "",
            "0",
            o.stuck == 0,
            f"summed over the 3 views; {o.stuck_at_end} out when the flood ended, all back "
            f"after {o.recovery:.1f} s"
            if o.stuck == 0
            else "summed over the 3 views",
        ),
        Result(
            f"SWIM fuzz {label}: false deaths during the flood",
            o.false_deaths,
            "",
            "0",
            o.false_deaths == 0,
            f"dead/left events about the 3 live members; longest outage "
            f"{o.longest_outage:.2f} s; {o.claims_disproved:,} forged dead/left claims "
            f"disproved by a check; deaths declared / claims confirmed per node (of anyone, "
            f"phantoms included): {o.verdicts}",
        ),
        Result(
            f"SWIM fuzz {label}: RSS growth",
            o.rss_growth_mb,
            "MB",
            "<= 5 MB",
            o.rss_growth_mb <= 5.0,
            f"this process (3 nodes), after warm-up to after the flood; {o.phantoms} phantom "
            "members held (forged alive records of unknown names, probed, then reaped)",
        ),
        Result(
            f"SWIM fuzz {label}: CPU per 10^5 datagrams",
            o.cpu_per_100k,
            "s",
            "(reported)",
            True,
            "3 nodes in one process; the fuzzer runs in its own",
        ),
    ]


def run(
    quick: bool, trace: bool = False, blind: bool = False, default_buffer: bool = False
) -> list[Result]:
    count = 100_000 if quick else 1_000_000
    results: list[Result] = []
    for label, key in (("no key", None), ("with key", KEY)):
        if blind:
            label += ", check_claims off"
        if default_buffer:
            label += ", kernel's buffer"
        outcome = trio.run(_flood, count, key, 1234, trace, not blind, default_buffer)
        results.extend(_results(outcome, label))
    return results


if __name__ == "__main__":
    from benchmarks._harness import format_table

    flags = set(sys.argv[1:])
    print(
        format_table(
            run(
                "--quick" in flags,
                "--trace-memory" in flags,
                "--blind" in flags,
                "--default-buffer" in flags,
            )
        )
    )
