"""Transport questions: what does the bridge cost against raw ZeroMQ, and which codec?

Two OS processes on loopback: this one and ``jarvis_trio.bench.questions.transport_peer``.
Measured in the same run, so that the ratios hold on a noisy machine:

* the envelope codec: ours (msgpack header + JSON payload) against all-msgpack (which needs a
  validation walk to refuse non-JSON values), all-JSON (msgspec) and the standard library;
* a raw pyzmq DEALER -> ROUTER echo: sequential round trips and 64 in flight (the ceiling);
* the same through two bridges (Trio task -> I/O thread -> ZeroMQ -> I/O thread -> Trio task
  and back): sequential round trips, 64 concurrent requesters, a one-way stream counted at
  the receiver;
* the same through the whole stack -- ``PeerClient.request`` / ``notify`` from an agent here
  to agents of a p2p node in another process (``jarvis_trio.bench.questions.transport_node``)
  -- and how long a new node takes from start until that node's agents are discoverable;
* the three ratios the performance targets are stated in, from *pairs of adjacent blocks*
  (:func:`_paired_ratios`): the raw echo, the bridge and the far node are all up at once, and
  each pair measures the compared figure and the runtime's right after one another (in
  alternating order), so that both halves of a ratio share the machine's load of that moment;
  the figure is the median over the pairs. Whole rounds seconds apart let a shared machine's
  load swing a ratio by 2x or more between rounds.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import trio
import zmq

from jarvis_trio.bench.questions._agents import Caller
from jarvis_trio.bench.results import Result, median, percentile
from jarvis_trio.cluster import ClusterNode
from jarvis_trio.mesh import Mesh, open_mesh
from jarvis_trio.transport import BridgeSettings, Envelope, Kind, open_bridge
from jarvis_trio.transport.envelope import decode_frame, encode_envelope

_LIMIT = 1 << 20


def _sample_envelope(i: int = 0) -> Envelope:
    return Envelope(
        Kind.REQUEST,
        "analyst-1a2b3c4d",
        "scout-5e6f7a8b",
        f"req-{i:012x}",
        1_700_000_000.0 + i,
        {"mission_id": "abc123", "priority": "high"},
        {"need": "clarification", "entity": "Entity_X", "scores": [1, 2, 3], "ok": True},
    )


# -- codec ------------------------------------------------------------------------------------
class _Hybrid(msgspec.Struct, array_like=True, gc=False):
    kind: Kind
    target: str
    sender: str
    correlation_id: str | None
    timestamp: float
    context: bytes | None
    data: bytes


def _json_walk(value: Any) -> None:
    """What all-msgpack needs on receipt: refuse what JSON cannot carry."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if any(type(k) is not str for k in item):
                raise ValueError("non-string key")
            children: Any = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append(child)
            elif child is not None and kind not in (str, int, float, bool):
                raise ValueError(f"{kind.__name__} is not JSON")


def _time_ns(candidates: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """ns per call of each candidate: medians of 5 rounds, candidates interleaved in each
    round so that a burst of load on the machine hits all of them alike."""
    runs: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(5):
        for name, fn in candidates.items():
            start = time.perf_counter_ns()
            for _ in range(n):
                fn()
            runs[name].append((time.perf_counter_ns() - start) / n)
    return {name: median(values) for name, values in runs.items()}


def _codec(quick: bool) -> list[Result]:
    """Encode + decode of one typical envelope, by codec. Every candidate does the whole job:
    from an :class:`Envelope` to bytes and back to an equal ``Envelope``, refusing what a
    peer must not send (unknown kinds; payloads that are not JSON)."""
    n = 20_000 if quick else 100_000
    env = _sample_envelope()
    ours = encode_envelope(env, _LIMIT)
    mp_enc = msgspec.msgpack.Encoder()
    mp_dec = msgspec.msgpack.Decoder(Envelope)  # the envelope as it is, in msgpack
    hy_dec = msgspec.msgpack.Decoder(_Hybrid)
    js_enc = msgspec.json.Encoder()
    js_dec = msgspec.json.Decoder()
    ctx_dec = msgspec.json.Decoder(dict[str, Any])

    def mp_encode() -> bytes:
        return mp_enc.encode(env)

    def mp_round() -> Envelope:
        got = mp_dec.decode(mp_encode())
        _json_walk(got.data)
        if got.context is not None:
            _json_walk(got.context)
        return got

    def hy_encode() -> bytes:
        context = None if env.context is None else js_enc.encode(env.context)
        return mp_enc.encode(
            _Hybrid(
                env.kind,
                env.target,
                env.sender,
                env.correlation_id,
                env.timestamp,
                context,
                js_enc.encode(env.data),
            )
        )

    def hy_round() -> Envelope:
        got = hy_dec.decode(hy_encode())
        context = None if got.context is None else ctx_dec.decode(got.context)
        return Envelope(
            got.kind,
            got.target,
            got.sender,
            got.correlation_id,
            got.timestamp,
            context,
            js_dec.decode(got.data),
        )

    def std_encode() -> bytes:
        return json.dumps(
            [
                int(env.kind),
                env.target,
                env.sender,
                env.correlation_id,
                env.timestamp,
                env.context,
                env.data,
            ]
        ).encode()

    def std_round() -> Envelope:
        got = json.loads(std_encode())
        if not isinstance(got[5], dict | None):
            raise TypeError("context must be an object")
        return Envelope(Kind(got[0]), *got[1:])

    for check in (mp_round, hy_round, std_round):
        assert check() == env
    candidates: dict[str, tuple[Callable[[], object], int]] = {
        "ours: msgspec JSON, typed": (
            lambda: decode_frame(encode_envelope(env, _LIMIT), _LIMIT),
            len(ours),
        ),
        "msgspec msgpack + JSON check": (mp_round, len(mp_encode())),
        "msgpack header + JSON payload": (hy_round, len(hy_encode())),
        "stdlib json": (std_round, len(std_encode())),
    }
    timings = _time_ns({name: fn for name, (fn, _size) in candidates.items()}, n // 5)
    best = min(timings.values())
    return [
        Result(
            f"codec enc+dec: {name}",
            timings[name],
            "ns",
            "informative",
            True,
            f"{size} B/frame; {timings[name] / best:.2f}x the fastest",
        )
        for name, (_fn, size) in candidates.items()
    ]


# -- processes --------------------------------------------------------------------------------
class _PeerProcess:
    """A benchmark helper process driven line by line over its stdin/stdout."""

    def __init__(self, module: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"jarvis_trio.bench.questions.{module}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        first = "READY" if module == "transport_node" else "PORT"
        self.ready = self.expect(first)
        self.port = int(self.ready.split()[1])

    def expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(prefix):
            raise RuntimeError(f"peer said {line!r}, expected {prefix}")
        return line

    def command(self, line: str, reply: str = "OK") -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.expect(reply)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- raw pyzmq ----------------------------------------------------------------------------------
class RawEcho:
    """A DEALER on a raw pyzmq ROUTER echo in another process (``transport_peer raw``): the
    baseline the transport targets compare with. Also used in blocks by ``bench_floors``."""

    def __init__(self) -> None:
        self._peer = _PeerProcess("transport_peer", "raw")
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._dealer = self._ctx.socket(zmq.DEALER)
        self._dealer.setsockopt(zmq.LINGER, 0)
        self._dealer.connect(f"tcp://127.0.0.1:{self._peer.port}")
        self._dealer.send(b"warm")
        self._dealer.recv()

    def round_trips(self, n: int) -> list[int]:
        """``n`` sequential echoes of 150 bytes, each timed (ns)."""
        dealer = self._dealer
        latencies = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            dealer.send(b"x" * 150)
            dealer.recv()
            latencies.append(time.perf_counter_ns() - t0)
        return latencies

    def in_flight(self, n: int, window: int = 64) -> float:
        """req/s of ``n`` echoes with ``window`` of them in flight."""
        dealer = self._dealer
        start = time.perf_counter()
        for _ in range(window):
            dealer.send(b"x" * 150)
        for i in range(n):
            dealer.recv()
            if i + window < n:
                dealer.send(b"x" * 150)
        return n / (time.perf_counter() - start)

    def close(self) -> None:
        self._dealer.close()
        self._ctx.term()
        self._peer.proc.kill()
        self._peer.proc.wait()


def _raw(n: int) -> tuple[float, float, float]:
    """(sequential req/s, p50 µs, 64-in-flight req/s) of a bare DEALER/ROUTER echo."""
    echo = RawEcho()
    try:
        start = time.perf_counter()
        latencies = echo.round_trips(n)
        seq_rate = n / (time.perf_counter() - start)
        conc_rate = echo.in_flight(n)
        return seq_rate, percentile(latencies, 50) / 1000, conc_rate
    finally:
        echo.close()


# -- through the bridge -------------------------------------------------------------------------
async def _bridge_figures(n: int, stream_n: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with open_bridge(BridgeSettings("bench")) as bridge:
        peer = await trio.to_thread.run_sync(_PeerProcess, "transport_peer", "bridge")
        try:
            await trio.to_thread.run_sync(peer.command, f"CONNECT bench {bridge.port}")
            bridge.connect("peer", "127.0.0.1", peer.port)
            await trio.to_thread.run_sync(peer.command, "ECHO")
            frame = encode_envelope(_sample_envelope(), _LIMIT)
            await bridge.send("peer", frame)
            await bridge.receive()

            latencies = []
            start = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                await bridge.send("peer", frame)
                await bridge.receive()
                latencies.append(time.perf_counter_ns() - t0)
            figures["seq_rate"] = n / (time.perf_counter() - start)
            figures["seq_p50_us"] = percentile(latencies, 50) / 1000

            figures["conc_rate"] = await _concurrent(bridge, frame, n)

            figures["stream_rate"], lost = await _bridge_stream(bridge, peer, frame, stream_n)
            stats = json.loads(await trio.to_thread.run_sync(peer.command, "STATS", "{"))
            figures["stream_lost"] = lost
            figures["stream_dropped"] = sum(v for k, v in stats.items() if k.startswith("drop"))
        finally:
            await trio.to_thread.run_sync(peer.close)
    return figures


async def _concurrent(bridge: Any, frame: bytes, n: int, requesters: int = 64) -> float:
    """Rate of ``requesters`` tasks each doing send-then-wait-for-its-echo in a loop."""
    waiting: dict[int, trio.Event] = {}
    per_task = n // requesters
    header = struct.Struct("!I")

    async def dispatch() -> None:
        while True:
            for _node, echoed in await bridge.receive():
                (who,) = header.unpack_from(echoed)
                waiting.pop(who).set()

    async def requester(who: int) -> None:
        tagged = header.pack(who) + frame
        for _ in range(per_task):
            event = waiting[who] = trio.Event()
            await bridge.send("peer", tagged)
            await event.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatch)
        start = time.perf_counter()
        async with trio.open_nursery() as inner:
            for who in range(requesters):
                inner.start_soon(requester, who)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return per_task * requesters / elapsed


# -- the targets' ratios ---------------------------------------------------------------------
def target_rows(ratios: dict[str, list[float]]) -> list[Result]:
    """The three rows the performance targets are judged by, each the median of its pairs."""

    def spread(values: list[float], scale: float, unit: str) -> str:
        each = ", ".join(f"{v * scale:.{1 if unit == 'x' else 0}f}" for v in values)
        return f"median of {len(values)} pairs of adjacent blocks; per pair: {each}"

    p50, conc, stream = (median(ratios[key]) for key in ("p50", "conc", "stream"))
    lost = ratios["lost"][0]
    return [
        Result(
            "PeerClient sequential p50 / raw pyzmq p50 (adjacent blocks)",
            p50,
            "x",
            "<= 2",
            p50 <= 2,
            spread(ratios["p50"], 1, "x"),
        ),
        Result(
            "PeerClient 64 requesters / raw pyzmq 64 in flight (adjacent blocks)",
            conc * 100,
            "%",
            ">= 80",
            conc >= 0.8,
            spread(ratios["conc"], 100, "%"),
        ),
        Result(
            "PeerClient notify stream / bridge-only stream (adjacent blocks)",
            stream * 100,
            "%",
            ">= 80, 0 lost",
            stream >= 0.8 and lost == 0,
            f"{lost:.0f} lost or failed; " + spread(ratios["stream"], 100, "%"),
        ),
    ]


# -- through PeerClient, node to node ----------------------------------------------------------
_NEAR_SWIM = {"swim_period": 0.2, "swim_probe_timeout": 0.1}


def _near_config(name: str, seed_port: int) -> dict[str, Any]:
    return {
        "p2p_enabled": True,
        "bind_port": 0,
        "node_name": name,
        "seed_nodes": f"127.0.0.1:{seed_port}",
        **_NEAR_SWIM,
    }


async def _discoverable(mesh: Mesh, role: str) -> None:
    cluster = mesh.router.remote
    assert isinstance(cluster, ClusterNode)
    await cluster.wait_until(lambda: bool(mesh.directory.matching(role=role)))


_PAYLOAD = {"need": "clarification", "entity": "Entity_X", "n": [1, 2, 3]}


async def _requests_in_sequence(peers: Any, echo_id: str, n: int) -> tuple[float, float, int]:
    """(req/s, p50 µs, failures) of ``n`` sequential ``PeerClient.request`` calls."""
    latencies = []
    failures = 0
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        if await peers.request(echo_id, _PAYLOAD, timeout=5) is None:
            failures += 1
        latencies.append(time.perf_counter_ns() - t0)
    rate = n / (time.perf_counter() - start)
    return rate, percentile(latencies, 50) / 1000, failures


async def _requests_concurrent(
    peers: Any, echo_id: str, n: int, requesters: int = 64
) -> tuple[float, int]:
    """(req/s, failures) of ``requesters`` tasks each making its share of ``n`` requests."""
    per_task = n // requesters
    failures = 0

    async def requester() -> None:
        nonlocal failures
        for _ in range(per_task):
            if await peers.request(echo_id, _PAYLOAD, timeout=5) is None:
                failures += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(requesters):
            nursery.start_soon(requester)
    return per_task * requesters / (time.perf_counter() - start), failures


async def _notify_stream(peers: Any, far: _PeerProcess, sink_id: str, n: int) -> tuple[float, int]:
    """(msg/s, lost) of ``n`` notifications back to back, counted by the far node's sink."""
    await trio.to_thread.run_sync(far.command, f"COUNT {n}")
    refused = 0
    start = time.perf_counter()
    for i in range(n):
        if not await peers.notify(sink_id, {"i": i}):
            refused += 1
    line = await trio.to_thread.run_sync(far.expect, "COUNTED")
    return n / (time.perf_counter() - start), n - int(line.split()[1]) + refused


async def _bridge_stream(
    bridge: Any, peer: _PeerProcess, frame: bytes, n: int
) -> tuple[float, int]:
    """(frames/s, lost) of ``n`` frames sent back to back, counted by the peer process."""
    await trio.to_thread.run_sync(peer.command, f"COUNT {n}")
    start = time.perf_counter()
    for _ in range(n):
        await bridge.send("peer", frame)
    line = await trio.to_thread.run_sync(peer.expect, "COUNTED")
    return n / (time.perf_counter() - start), n - int(line.split()[1])


async def _mesh_figures(n: int, stream_n: int, starts: int) -> dict[str, float]:
    """Request/notify figures through PeerClient to a node in another process, and the time
    a new node takes from start to seeing that node's agents."""
    figures: dict[str, float] = {}
    far = await trio.to_thread.run_sync(_PeerProcess, "transport_node")
    try:
        words = far.ready.split()
        seed_port, echo_id, sink_id = int(words[1]), words[2], words[3]
        start_times = []
        for i in range(starts):
            started = time.perf_counter()
            async with open_mesh(
                _near_config(f"probe-{i}", seed_port), agents=[Caller], env_file=None, environ={}
            ) as probe:
                with trio.fail_after(10):
                    await _discoverable(probe, "echo")
                start_times.append(time.perf_counter() - started)
        figures["start_s"] = median(start_times)

        async with open_mesh(
            _near_config("near", seed_port), agents=[Caller], env_file=None, environ={}
        ) as near:
            with trio.fail_after(10):
                await _discoverable(near, "sink")
            peers = near.agents[0].peers
            await peers.request(echo_id, _PAYLOAD, timeout=5)
            seq_rate, p50, seq_failures = await _requests_in_sequence(peers, echo_id, n)
            figures["seq_rate"], figures["seq_p50_us"] = seq_rate, p50
            figures["seq_failures"] = seq_failures
            figures["conc_rate"], conc_failures = await _requests_concurrent(peers, echo_id, n)
            figures["conc_failures"] = conc_failures
            rate, lost = await _notify_stream(peers, far, sink_id, stream_n)
            figures["stream_rate"], figures["stream_lost"] = rate, lost
    finally:
        await trio.to_thread.run_sync(far.close)
    return figures


async def _paired_ratios(
    pairs: int, seq_n: int, conc_n: int, stream_n: int
) -> dict[str, list[float]]:
    """The target ratios from ``pairs`` pairs of adjacent blocks (see the module docstring):
    per pair, ``p50`` = PeerClient sequential p50 / raw echo p50, ``conc`` = 64 PeerClient
    requesters / raw 64 in flight, ``stream`` = notify stream / bridge-only stream; ``lost``
    counts what either stream lost or a request failed. Even pairs measure the comparison
    first, odd pairs the runtime first."""
    ratios: dict[str, list[float]] = {"p50": [], "conc": [], "stream": [], "lost": [0.0]}
    raw = await trio.to_thread.run_sync(RawEcho)
    far = await trio.to_thread.run_sync(_PeerProcess, "transport_node")
    try:
        words = far.ready.split()
        seed_port, echo_id, sink_id = int(words[1]), words[2], words[3]
        async with (
            open_bridge(BridgeSettings("bench")) as bridge,
            open_mesh(
                _near_config("near", seed_port), agents=[Caller], env_file=None, environ={}
            ) as near,
        ):
            peer = await trio.to_thread.run_sync(_PeerProcess, "transport_peer", "bridge")
            try:
                await trio.to_thread.run_sync(peer.command, f"CONNECT bench {bridge.port}")
                bridge.connect("peer", "127.0.0.1", peer.port)
                frame = encode_envelope(_sample_envelope(), _LIMIT)
                with trio.fail_after(10):
                    await _discoverable(near, "sink")
                peers = near.agents[0].peers
                await peers.request(echo_id, _PAYLOAD, timeout=5)

                async def raw_p50() -> float:
                    latencies = await trio.to_thread.run_sync(raw.round_trips, seq_n)
                    return percentile(latencies, 50)

                async def mesh_p50() -> float:
                    _rate, p50, failures = await _requests_in_sequence(peers, echo_id, seq_n)
                    ratios["lost"][0] += failures
                    return p50

                async def raw_conc() -> float:
                    return await trio.to_thread.run_sync(raw.in_flight, conc_n)

                async def mesh_conc() -> float:
                    rate, failures = await _requests_concurrent(peers, echo_id, conc_n)
                    ratios["lost"][0] += failures
                    return rate

                async def bridge_stream() -> float:
                    rate, lost = await _bridge_stream(bridge, peer, frame, stream_n)
                    ratios["lost"][0] += lost
                    return rate

                async def mesh_stream() -> float:
                    rate, lost = await _notify_stream(peers, far, sink_id, stream_n)
                    ratios["lost"][0] += lost
                    return rate

                blocks = (
                    ("p50", raw_p50, mesh_p50, 1000.0),  # ns against µs
                    ("conc", raw_conc, mesh_conc, 1.0),
                    ("stream", bridge_stream, mesh_stream, 1.0),
                )
                for i in range(pairs):
                    for key, compared, ours, scale in blocks:
                        if i % 2 == 0:
                            base = await compared()
                            mine = await ours()
                        else:
                            mine = await ours()
                            base = await compared()
                        ratios[key].append(mine * scale / base)
            finally:
                await trio.to_thread.run_sync(peer.close)
    finally:
        await trio.to_thread.run_sync(far.close)
        await trio.to_thread.run_sync(raw.close)
    return ratios


def run(quick: bool) -> list[Result]:
    """Answer the transport questions (see the module docstring)."""
    results = _codec(quick)
    runs = 1 if quick else 3
    n = 2_000 if quick else 10_000
    stream_n = 30_000 if quick else 200_000
    starts = 3 if quick else 10
    raw_runs, bridge_runs, mesh_runs = [], [], []
    for _ in range(runs):  # interleaved, so that load on the machine hits all three alike
        raw_runs.append(_raw(n))
        bridge_runs.append(trio.run(_bridge_figures, n, stream_n))
        mesh_runs.append(trio.run(_mesh_figures, n, stream_n, starts))
    raw_seq = median([r[0] for r in raw_runs])
    raw_p50 = median([r[1] for r in raw_runs])
    raw_conc = median([r[2] for r in raw_runs])

    def fig(runs_: list[dict[str, float]], key: str) -> float:
        return median([r[key] for r in runs_])

    results += [
        Result(
            "raw pyzmq echo, sequential",
            raw_seq,
            "req/s",
            "baseline",
            True,
            f"p50 {raw_p50:.0f} µs",
        ),
        Result("raw pyzmq echo, 64 in flight", raw_conc, "req/s", "baseline", True),
    ]
    for label, figures in (("bridge echo", bridge_runs), ("PeerClient", mesh_runs)):
        seq, p50 = fig(figures, "seq_rate"), fig(figures, "seq_p50_us")
        conc, stream = fig(figures, "conc_rate"), fig(figures, "stream_rate")
        lost = max(f["stream_lost"] + f.get("stream_dropped", 0) for f in figures)
        failed = max(f.get("seq_failures", 0) + f.get("conc_failures", 0) for f in figures)
        what = "request" if label == "PeerClient" else "echo"
        results += [
            Result(
                f"{label}: sequential {what}s",
                seq,
                "req/s",
                ">= 5,000",
                seq >= 5000,
                f"{seq / raw_seq:.0%} of raw; {failed:.0f} failed",
            ),
            Result(
                f"{label}: sequential p50",
                p50,
                "µs",
                "<= 200",
                p50 <= 200,
                f"{p50 / raw_p50:.1f}x raw p50",
            ),
            Result(
                f"{label}: 64 concurrent requesters",
                conc,
                "req/s",
                ">= 20,000",
                conc >= 20_000,
                f"{conc / raw_conc:.0%} of raw 64 in flight",
            ),
            Result(
                f"{label}: one-way stream",
                stream,
                "msg/s",
                ">= 100,000, 0 lost",
                stream >= 100_000 and lost == 0,
                f"{lost:.0f} lost of {stream_n}, counted at the receiver",
            ),
        ]
    results += target_rows(trio.run(_paired_ratios, 5 if quick else 9, 400, 2_048, 20_000))
    start = fig(mesh_runs, "start_s")
    results.append(
        Result(
            "node start with one seed -> seed's agents discoverable",
            start,
            "s",
            "<= 1",
            start <= 1.0,
            "in-process node, seed in another process",
        )
    )
    return results
