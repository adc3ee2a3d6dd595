"""SWIM + Lifeguard, measured on the simulator (LAN profile, 1 s period) and on the core.

Each function answers one target of the SWIM issue. ``quick=True`` shrinks cluster sizes and
repetitions (each result's note says what ran); ``quick=False`` is the full measurement.
``python -m jarvis_trio.bench.questions.bench_swim [--quick]`` prints the table on its own.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from jarvis_trio.bench.results import Result, format_table, machine, median, percentile
from jarvis_trio.swim import codec
from jarvis_trio.swim.config import SwimConfig
from jarvis_trio.swim.members import EventKind, MembershipEvent, NodeMeta
from jarvis_trio.swim.protocol import SwimProtocol
from jarvis_trio.swim.sim import NetConfig, SimNode, Simulator

LAN = SwimConfig()
PIGGYBACK_ONLY = SwimConfig(gossip_interval=None, pushpull_interval=None)


def _listen(sim: Simulator, kind: EventKind, sink: Callable[[float, SimNode, str], None]) -> None:
    def listener(now: float, node: SimNode, event: MembershipEvent) -> None:
        if event.kind is kind:
            sink(now, node, event.member.name)

    sim.listeners.append(listener)


# ---------------------------------------------------------------------- scale


def bench_scale(quick: bool) -> list[Result]:
    n, periods = (256, 150) if quick else (1024, 600)
    out = subprocess.run(
        [sys.executable, "-m", "jarvis_trio.bench.questions.swim_scale", str(n), str(periods)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    limit = 60.0 * (n * periods) / (1024 * 600)
    return [
        Result(
            f"swim sim {n} nodes x {periods} periods",
            data["seconds"],
            "s",
            f"<= {limit:.0f} s" + (" (scaled from 60 s for 1024x600)" if quick else ""),
            data["seconds"] <= limit and data["converged"],
            f"build {data['build_seconds']:.1f} s, {data['delivered']:,} datagrams, "
            f"converged={data['converged']}",
        ),
        Result(
            f"swim sim {n} nodes peak memory",
            data["peak_mib"],
            "MiB",
            "report",
            True,
            "peak RSS of the simulating process (all views are full: n^2 records)",
        ),
    ]


# ---------------------------------------------------------------------- first detection


def _first_detection(n: int, samples: int, seed: int) -> tuple[list[float], int]:
    """Periods from a crash (just before a synchronized round) to the first suspicion.

    Victims are crashed in small batches (``n // 256`` at a time) so that large clusters give
    many samples cheaply; a cluster is replaced once a quarter of it has been crashed.
    """
    results: list[float] = []
    max_gap = 0
    batch = max(1, n // 256)
    rng = random.Random(seed)
    sim_seed = seed
    while len(results) < samples:
        sim_seed += 1
        sim = Simulator(n, seed=sim_seed, config=PIGGYBACK_ONLY, aligned=True, record_trace=False)
        first: dict[str, float] = {}

        def on_suspect(
            now: float, _node: SimNode, name: str, first: dict[str, float] = first
        ) -> None:
            first.setdefault(name, now)

        _listen(sim, EventKind.SUSPECT, on_suspect)
        logs: list[list[tuple[float, str]]] = []
        if not max_gap and n <= 128:
            for node in sim.nodes:
                node.protocol.on_probe = []
                logs.append(node.protocol.on_probe)
            sim.run_until(4.0 * n)
        round_start = math.floor(sim.now) + 3 + rng.randrange(5)
        while len(results) < samples and len(sim.running_nodes()) - batch >= 0.75 * n:
            crash_at = round_start + 0.49  # probes start at k + 0.5 (aligned phases)
            sim.run_until(crash_at)
            victims = rng.sample([node.index for node in sim.running_nodes()], batch)
            names = [sim.nodes[v].name for v in victims]
            for victim in victims:
                sim.crash(victim)
            while not all(name in first for name in names) and sim.now < crash_at + 2 * n + 5:
                sim.run_until(sim.now + 1.0)
            results.extend(first[name] - crash_at for name in names if name in first)
            round_start = math.floor(sim.now) + 1 + rng.randrange(3)
        for log in logs:
            last: dict[str, int] = {}
            for tick, (_, target) in enumerate(log):
                if target in last:
                    max_gap = max(max_gap, tick - last[target])
                last[target] = tick
    return results, max_gap


def bench_first_detection(quick: bool) -> list[Result]:
    results = []
    sizes = (16, 128, 1024)
    for n in sizes:
        # the mean of a geometric variable is noisy: many samples where they are cheap
        samples = {16: 100, 128: 50, 1024: 16}[n] if quick else {16: 2000, 128: 1000, 1024: 160}[n]
        times, gap = _first_detection(n, samples, seed=n)
        mean = statistics.fmean(times)
        results.append(
            Result(
                f"swim first detection mean, N={n}",
                mean,
                "periods",
                "<= 1.62",
                mean <= 1.62,
                f"{len(times)} crashes at a round boundary; e/(e-1)=1.58; "
                f"standard error {statistics.stdev(times) / math.sqrt(len(times)):.2f}",
            )
        )
        if gap:
            results.append(
                Result(
                    f"swim max prober gap, N={n}",
                    gap,
                    "periods",
                    f"<= 2N-1 = {2 * n - 1}",
                    gap <= 2 * n - 1,
                    f"every prober, {4 * n} periods, round-robin over a reshuffled list",
                )
            )
    return results


# ---------------------------------------------------------------------- dissemination


def bench_dissemination(quick: bool) -> list[Result]:
    n = 1024
    trials = 5 if quick else 30
    sim = Simulator(n, seed=11, config=PIGGYBACK_ONLY, record_trace=False)
    reached: dict[int, list[float]] = {}
    version = [0]

    def on_meta(now: float, _node: SimNode, _name: str) -> None:
        reached.setdefault(version[0], []).append(now)

    _listen(sim, EventKind.METADATA, on_meta)
    rng = random.Random(3)
    full: list[float] = []
    t = 5.0
    for trial in range(1, trials + 1):
        version[0] = trial
        t = sim.now + 1.0 + rng.random()
        sim.run_until(t)
        sim.update_metadata(rng.randrange(n), trial)
        while len(reached.get(trial, [])) < n - 1 and sim.now < t + 40:
            sim.run_until(sim.now + 0.5)
        times = reached.get(trial, [])
        full.append((max(times) - t) if len(times) >= n - 1 else math.inf)
    p99 = percentile(full, 99)
    return [
        Result(
            "swim dissemination to 100% of N=1024, p99",
            p99,
            "periods",
            "<= 12",
            p99 <= 12,
            f"{trials} updates, piggyback only (no gossip rounds, no push/pull); "
            f"median {median(full):.1f}",
        )
    ]


# ---------------------------------------------------------------------- crash to dead


def _crash_to_dead(
    n: int, crashes: int, seed: int, config: SwimConfig, stalls: float = 0.0
) -> tuple[list[float], int, int, int]:
    """Per-node seconds from crash to DEAD; false deaths, node-periods, false suspicions."""
    sim = Simulator(n, seed=seed, config=config, record_trace=False)
    crashed_at: dict[str, float] = {}
    delays: list[float] = []
    false_deaths = [0]

    def on_dead(now: float, _node: SimNode, name: str) -> None:
        if name in crashed_at:
            delays.append(now - crashed_at[name])
        else:
            false_deaths[0] += 1

    _listen(sim, EventKind.DEAD, on_dead)
    false_suspicions = [0]

    def on_suspect(_now: float, _node: SimNode, name: str) -> None:
        if name not in crashed_at:
            false_suspicions[0] += 1

    _listen(sim, EventKind.SUSPECT, on_suspect)
    rng = random.Random(seed)
    if stalls:
        _schedule_stalls(sim, rng, stalls, until=10.0 + 60.0 * crashes + 60.0)
    for i in range(crashes):
        sim.run_until(10.0 + 60.0 * i + rng.random())
        victim = rng.choice([node.index for node in sim.nodes if node.running])
        crashed_at[sim.nodes[victim].name] = sim.now
        sim.crash(victim)
    sim.run_until(sim.now + 60.0)
    return delays, false_deaths[0], int(sim.now) * n, false_suspicions[0]


def _schedule_stalls(sim: Simulator, rng: random.Random, share: float, until: float) -> None:
    """Stall random nodes for U(1, 5) s so that on average ``share`` of them are stalled."""
    n = len(sim.nodes)
    rate = share * n / 3.0  # stalls per second; mean stall 3 s
    t = 1.0
    while t < until:
        t += rng.expovariate(rate)
        index, duration = rng.randrange(n), rng.uniform(1.0, 5.0)
        sim.at(t, _stall_action(sim, index, duration))


def _stall_action(sim: Simulator, index: int, duration: float) -> Callable[[], None]:
    def action() -> None:
        if sim.nodes[index].running:
            sim.stall(index, duration)

    return action


def bench_crash_to_dead(quick: bool) -> list[Result]:
    n, crashes = (256, 3) if quick else (1024, 5)
    delays, _, _, _ = _crash_to_dead(n, crashes, seed=21, config=LAN)
    med, p99 = median(delays), percentile(delays, 99)
    note = f"N={n}, {crashes} crashes x every node, LAN profile"
    return [
        Result(f"swim crash->dead median, N={n}", med, "s", "<= 16 s", med <= 16, note),
        Result(f"swim crash->dead p99, N={n}", p99, "s", "<= 24 s", p99 <= 24, note),
    ]


# ---------------------------------------------------------------------- false suspicion


def bench_false_suspicion(quick: bool) -> list[Result]:
    results = []
    budget = 20_000 if quick else 200_000  # probes per case at most
    for k in (1, 3):
        for p in (0.01, 0.05, 0.10, 0.20):
            expected = (1 - (1 - p) ** 2) * (1 - (1 - p) ** 4) ** k
            n = 32
            config = SwimConfig(
                indirect_probes=k, gossip_interval=None, pushpull_interval=None, dead_retention=5
            )
            sim = Simulator(n, seed=int(p * 1000) + k, config=config, net=NetConfig(loss=p))
            sim.record_trace = False
            wanted = min(budget, int(400 / expected))
            while sum(node.protocol.probes for node in sim.nodes) < wanted:
                sim.run_until(sim.now + 50.0)
            probes = sum(node.protocol.probes for node in sim.nodes)
            failed = sum(node.protocol.stats["probes_failed"] for node in sim.nodes)
            measured = failed / probes
            error = (measured - expected) / expected
            spread = 1.96 / math.sqrt(failed) if failed else math.inf
            results.append(
                Result(
                    f"swim false suspicion p={p:.0%} k={k}",
                    measured,
                    "per probe",
                    f"{expected:.3g} +-20%",
                    abs(error) <= 0.2,
                    f"{failed}/{probes} probes ({error:+.0%}; 95% CI +-{spread:.0%})",
                )
            )
    return results


# ---------------------------------------------------------------------- false deaths


def bench_false_deaths(quick: bool) -> list[Result]:
    n = 256
    periods = 50 if quick else 3_907  # 3,907 x 256 = 1.0e6 node-periods
    sim = Simulator(n, seed=31, net=NetConfig(loss=0.10), record_trace=False)
    deaths = [0]
    _listen(sim, EventKind.DEAD, lambda _t, _n, _name: deaths.__setitem__(0, deaths[0] + 1))
    sim.run_until(float(periods))
    node_periods = n * periods
    per_million = deaths[0] / node_periods * 1e6
    return [
        Result(
            "swim false deaths at 10% loss, N=256",
            per_million,
            "per 1e6 node-periods",
            "0",
            deaths[0] == 0,
            f"{deaths[0]} deaths in {node_periods:,} node-periods, Lifeguard on",
        )
    ]


def bench_lifeguard(quick: bool) -> list[Result]:
    n, crashes = 128, (1 if quick else 12)
    on = _crash_to_dead(n, crashes, seed=41, config=LAN, stalls=0.02)
    off = _crash_to_dead(n, crashes, seed=41, config=LAN.scaled(lifeguard=False), stalls=0.02)
    fd_on, fd_off = on[1], off[1]
    # 0/0 is no ratio at all: reported as nan, and as a miss, with both counts in the note
    ratio = fd_off / fd_on if fd_on else math.inf if fd_off else math.nan
    slow = median(on[0]) / median(off[0]) - 1
    return [
        Result(
            "swim Lifeguard: false deaths off/on, 2% of 128 stalled 1-5 s",
            ratio,
            "x",
            ">= 50x",
            ratio >= 50,
            f"off {fd_off}, on {fd_on} false deaths in {on[2]:,} node-periods each; "
            f"false suspicions off {off[3]}, on {on[3]}",
        ),
        Result(
            "swim Lifeguard: true-failure detection slowdown",
            slow * 100,
            "%",
            "<= 10%",
            slow <= 0.10,
            f"median crash->dead on {median(on[0]):.1f} s, off {median(off[0]):.1f} s "
            f"({crashes} crashes)",
        ),
    ]


def bench_claim_check(quick: bool) -> list[Result]:
    """What checking a third party's dead/left claim before believing it costs a real crash:
    the same crashes, detected with the check and with SWIM's blind belief."""
    n, crashes = (64, 2) if quick else (256, 8)
    checked = _crash_to_dead(n, crashes, seed=51, config=LAN)
    blind = _crash_to_dead(n, crashes, seed=51, config=LAN.scaled(check_claims=False))
    added = median(checked[0]) - median(blind[0])
    added_p99 = percentile(checked[0], 99) - percentile(blind[0], 99)
    bound = 2 * LAN.probe_timeout
    return [
        Result(
            f"swim claim check: crash->dead median added, N={n}",
            added,
            "s",
            f"<= {bound:g} s (2 probe timeouts)",
            added <= bound,
            f"median {median(checked[0]):.2f} s checked, {median(blind[0]):.2f} s blind; "
            f"p99 {added_p99:+.2f} s; false deaths {checked[1]} checked, {blind[1]} blind "
            f"({crashes} crashes x every node)",
        )
    ]


# ---------------------------------------------------------------------- partition healing


def bench_partition(quick: bool) -> list[Result]:
    n = 32 if quick else 128
    trials = 2 if quick else 3
    heal_times = []
    for trial in range(trials):
        sim = Simulator(n, seed=51 + trial, record_trace=False)
        sim.run_until(5.0)
        sim.partition([range(n // 2), range(n // 2, n)])
        sim.run_until(95.0)
        assert sim.nodes[0].protocol.num_live() == n // 2, "each side must give the other up"
        sim.heal()
        while not sim.converged() and sim.now < 95.0 + 300:
            sim.run_until(sim.now + 1.0)
        heal_times.append(sim.now - 95.0)
    worst = max(heal_times)
    return [
        Result(
            f"swim partition healing, N={n}",
            worst,
            "s",
            "<= 60 s",
            worst <= 60,
            f"worst of {trials}; 90 s two-way partition, each side declared the other dead",
        )
    ]


# ---------------------------------------------------------------------- wire


def bench_wire(quick: bool) -> list[Result]:
    name = "node-0123abcd"  # the default node name shape
    ping = len(codec.header_ping(7, codec.encode_name(name)) + b"\x00")
    ack = len(codec.header_seq(codec.ACK, 7) + b"\x00")
    n = 64
    duration = 300.0 if quick else 1200.0
    sim = Simulator(n, seed=61, record_trace=False)
    sim.run_until(60.0)
    before = sum(node.protocol.tx_bytes for node in sim.nodes)
    sim.run_until(60.0 + duration)
    rate = (sum(node.protocol.tx_bytes for node in sim.nodes) - before) / n / duration
    return [
        Result("swim ping size (steady state, no key)", ping, "B", "<= 48 B", ping <= 48),
        Result("swim ack size (steady state, no key)", ack, "B", "<= 16 B", ack <= 16),
        Result(
            "swim bytes sent per node, 1 s period",
            rate,
            "B/s",
            "<= 150 B/s",
            rate <= 150,
            f"N={n}, {duration:.0f} s, UDP payload, push/pull included",
        ),
    ]


# ---------------------------------------------------------------------- CPU per datagram


def bench_cpu(quick: bool) -> list[Result]:
    n = 10_000
    rounds = 2_000 if quick else 20_000

    def meta(i: int) -> NodeMeta:
        return NodeMeta(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7946, 8946, b"k" * 32, i)

    names = [f"node-{i:08x}" for i in range(n + rounds)]
    entries = [
        (names[i], meta(i), codec.encode_name(names[i]), codec.encode_meta(meta(i)))
        for i in range(1, n)
    ]
    proto = SwimProtocol(names[0], meta(0), LAN, random.Random(1))
    proto.bootstrap(entries)
    proto.start(0.0)
    rng = random.Random(2)
    me8 = codec.encode_name(names[0])
    peer = meta(5).address
    samples: list[float] = []
    now = 1.0
    clock = time.perf_counter_ns
    for r in range(rounds):
        i = rng.randrange(1, n)
        who = codec.encode_name(names[i])
        newcomer = n + r
        piggy = [
            codec.encode_suspect(who, 0, codec.encode_name(names[rng.randrange(1, n)])),
            codec.encode_alive(
                codec.encode_name(names[newcomer]), 0, codec.encode_meta(meta(newcomer % 60000))
            ),
        ]
        datagrams = [
            codec.header_ping(r, me8) + b"\x02" + b"".join(piggy),
            codec.header_seq(codec.ACK, r) + b"\x00",
            codec.header_ping_req(r, codec.encode_address(*meta(i).address), who) + b"\x00",
            codec.HEADER_GOSSIP
            + b"\x01"
            + codec.encode_alive(who, 1 + r, codec.encode_meta(meta(i))),
        ]
        for data in datagrams:
            now += 0.0005
            started = clock()
            proto.handle_datagram(data, peer, now)
            samples.append((clock() - started) / 1000)
    p99 = percentile(samples, 99)
    return [
        Result(
            "swim CPU per datagram p99, 10,000 members",
            p99,
            "us",
            "<= 200 us",
            p99 <= 200,
            f"{len(samples):,} datagrams (pings with piggyback, acks, ping-reqs, gossip); "
            f"median {median(samples):.1f} us",
        )
    ]


def run(quick: bool) -> list[Result]:
    """Every SWIM figure. ``quick`` runs smaller clusters and fewer repetitions."""
    results: list[Result] = []
    for bench in (
        bench_wire,
        bench_cpu,
        bench_first_detection,
        bench_dissemination,
        bench_crash_to_dead,
        bench_false_suspicion,
        bench_false_deaths,
        bench_lifeguard,
        bench_claim_check,
        bench_partition,
        bench_scale,
    ):
        started = time.perf_counter()
        found = bench(quick)
        took = time.perf_counter() - started
        mode = "quick: smaller N / fewer runs; " if quick else ""
        results.extend(
            Result(r.question, r.figure, r.unit, r.target, r.ok, f"{mode}{r.note} [{took:.0f} s]")
            for r in found
        )
    return results


if __name__ == "__main__":
    quick_mode = "--quick" in sys.argv
    print(f"machine: {machine()}")
    print(format_table(run(quick_mode)))
