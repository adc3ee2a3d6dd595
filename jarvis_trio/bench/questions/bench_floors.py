"""Floors: what the designs the performance targets constrain cannot go below.

Each question measures the cheapest implementation of a constrained design, written from
scratch in plain trio, pyzmq, asyncio and threads (``_floor_bridge``, ``_floor_loops``,
``_floor_codec``; no code of the runtime in the path), alternating in the same run with the
figure the target compares with. If a floor alone exceeds a target, no implementation of that
design meets it on this machine; if it does not, the row says how much room is left.

1. **Bridged ZeroMQ echo** against raw pyzmq's echo p50 (target: a cross-node request within
   2x). The design card keeps the I/O thread as the one that polls the ZeroMQ sockets; the
   Trio thread may send on a DEALER it alone owns. So a round trip is: Trio task -> DEALER ->
   far ROUTER -> far I/O thread -> doorbell -> far Trio task -> its DEALER -> our ROUTER -> our
   I/O thread -> doorbell -> our Trio task. Measured with each doorbell, with the far node
   bridged too (a real peer is built the same way) and with the far side a raw pyzmq echo
   (isolating our side's bridge). No payload codec: that is question 4.
2. **Two-loop crossings** against a bare thread round trip (targets: ``run_asyncio`` hosted
   from asyncio within 2x of it; the asyncio-hosted request within native + 2 of them):
   Trio -> asyncio callback -> Trio, the same starting a no-op coroutine as a Task, and an
   asyncio task -> Trio -> back; each with the cheaper ways to post.
3. **Codec per notification** against the bridge-only stream (target: the PeerClient notify
   stream at 80 % of it): the cheapest encode + decode of a documented-API message.
4. **64 requesters** through two bridged nodes (with and without the request/reply codec)
   against raw pyzmq's 64 in flight (target: 80 %).
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
import zmq
from outcome import Value

from jarvis_trio.bench.questions._floor_bridge import DOORBELLS, Endpoint, open_endpoint
from jarvis_trio.bench.questions._floor_codec import (
    CODECS,
    NOTIFY,
    REQUEST,
    Codec,
    packed_codec,
    request_codec,
)
from jarvis_trio.bench.questions._floor_loops import Crossings, asyncio_thread
from jarvis_trio.bench.questions._threads import thread_echo
from jarvis_trio.bench.questions.bench_transport import (
    RawEcho,
    _bridge_figures,
    _PeerProcess,
    _time_ns,
)
from jarvis_trio.bench.results import Result, median, percentile, step

__all__ = ["Sizes", "answer", "run"]

P50_TARGET = 2.0
"""Cross-node sequential request p50 over raw pyzmq echo p50 (issue 15)."""
RUN_ASYNCIO_TARGET = 2.0
"""``run_asyncio`` hosted from asyncio over the bare thread round trip (issue 14)."""
GAP_TARGET = 2.0
"""asyncio-hosted request p50 minus native p50, in bare thread round trips (issue 15)."""
SHARE_TARGET = 0.8
"""Notify stream over the bridge-only stream; 64 requesters over raw 64 in flight."""
LONG_SWITCH = 0.05
"""A switch interval 10x the interpreter's default, tried for the 64 requesters: with the I/O
thread and the Trio thread both busy, a longer interval means fewer GIL hand-overs."""

_FRAME = b"x" * 150  # what bench_transport's raw echo sends
_SENDER, _TARGET = "caller-1a2b3c4d", "sink-5e6f7a8b"
_REQUESTERS = 64


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each question measures: ``rounds`` rounds, each alternating everything."""

    rounds: int
    block: int  # sequential round trips per block (echoes, crossings, bare)
    blocks: int  # blocks of each measurement per round
    codec_n: int  # encode/decode calls of 64 messages per timing
    stream_n: int  # frames of the bridge-only stream
    conc_n: int  # requests of the 64-requester measurements


QUICK = Sizes(rounds=5, block=200, blocks=8, codec_n=300, stream_n=30_000, conc_n=6400)
FULL = Sizes(rounds=5, block=200, blocks=20, codec_n=1000, stream_n=100_000, conc_n=25_600)


# -- 1 and 4: through bridged nodes -------------------------------------------------------------
@dataclass(slots=True)
class _Leg:
    """Our bridged endpoint talking to one far process."""

    near: Endpoint
    peer: _PeerProcess


async def _open_leg(
    stack: AsyncExitStack, ctx: zmq.Context[zmq.Socket[bytes]], doorbell: str, far: list[str]
) -> _Leg:
    """Our endpoint with ``doorbell`` and a far ``floors_peer`` started with ``far`` (``NEAR``
    standing for our ROUTER's port), warmed up; both closed with ``stack``."""
    near = await stack.enter_async_context(open_endpoint(ctx, doorbell))
    args = [str(near.port) if a == "NEAR" else a for a in far]
    peer = await trio.to_thread.run_sync(_PeerProcess, "floors_peer", *args)
    stack.callback(peer.proc.wait)
    stack.callback(peer.proc.kill)
    near.connect(peer.port)
    if far[0] == "reply":
        encode, _decode = request_codec()
        warm = encode(REQUEST, _SENDER, _TARGET, 0, {"warm": True})
    elif far[0] == "packed":
        warm = packed_codec().encode([(REQUEST, _SENDER, _TARGET, 0, {"warm": True})])[0]
    else:
        warm = struct.pack("!I", 0) + _FRAME
    with trio.fail_after(10):  # the connections are up and everything is warm
        for _ in range(50):
            near.send(warm)
            await near.receive()
    return _Leg(near, peer)


async def _sequential(near: Endpoint, n: int) -> list[int]:
    """``n`` echoes through ``near``, each timed (ns), as bench_transport times raw pyzmq's."""
    send, receive = near.send, near.receive
    clock = time.perf_counter_ns
    latencies = []
    for _ in range(n):
        started = clock()
        send(_FRAME)
        await receive()
        latencies.append(clock() - started)
    return latencies


async def _timed(
    requester: Callable[[int], Awaitable[None]], *helpers: Callable[[], Awaitable[None]]
) -> float:
    """Seconds until ``_REQUESTERS`` tasks of ``requester`` have ended, with ``helpers``
    (the dispatcher, a flusher) running beside them and cancelled after."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for helper in helpers:
                nursery.start_soon(helper)
            started = time.perf_counter()
            async with trio.open_nursery() as inner:
                for who in range(_REQUESTERS):
                    inner.start_soon(requester, who)
            elapsed = time.perf_counter() - started
            nursery.cancel_scope.cancel()
    return elapsed


def _park_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


async def _requesters(
    near: Endpoint,
    n: int,
    request: Callable[[int], bytes],
    replies: Callable[[list[bytes]], list[int]],
) -> float:
    """Seconds for 64 tasks each sending a request and sleeping until a dispatcher task wakes
    it with its reply (one task switch per request each way, as an agent's request has)."""
    waiting: dict[int, trio.lowlevel.Task] = {}
    per_task = n // _REQUESTERS
    send, reschedule = near.send, trio.lowlevel.reschedule

    async def dispatch() -> None:
        while True:
            for ident in replies(await near.receive_batch()):
                reschedule(waiting.pop(ident), Value(None))

    async def requester(who: int) -> None:
        current = trio.lowlevel.current_task()
        for k in range(per_task):
            ident = who * per_task + k
            waiting[ident] = current
            send(request(ident))
            await trio.lowlevel.wait_task_rescheduled(_park_abort)

    return await _timed(requester, dispatch)


async def _echo64(near: Endpoint, n: int) -> float:
    header = struct.Struct("!I")
    pack, unpack = header.pack, header.unpack_from

    def request(ident: int) -> bytes:
        return pack(ident) + _FRAME

    def replies(frames: list[bytes]) -> list[int]:
        return [unpack(frame)[0] for frame in frames]

    return await _requesters(near, n, request, replies)


async def _requests64(near: Endpoint, n: int, *, long_switch: bool) -> float:
    """64 requesters with the request/reply codec; ``long_switch``: with the interpreter's
    switch interval at :data:`LONG_SWITCH` here (the far process is started with it too)."""
    encode, decode = request_codec()
    payload = {"need": "clarification", "entity": "Entity_X", "n": 3}

    def request(ident: int) -> bytes:
        return encode(REQUEST, _SENDER, _TARGET, ident, payload)

    def replies(frames: list[bytes]) -> list[int]:
        return [message.id for message in decode(frames)]

    interval = sys.getswitchinterval()
    if long_switch:
        sys.setswitchinterval(LONG_SWITCH)
    try:
        return await _requesters(near, n, request, replies)
    finally:
        sys.setswitchinterval(interval)


async def _packed64(near: Endpoint, n: int) -> float:
    """64 requesters whose requests of one scheduling batch leave in one frame: each queues
    its request and the first of a batch wakes a flusher task, which runs in the next batch
    and encodes (and checks) them all at once; the far node answers each batch in one frame."""
    codec = packed_codec()
    encode, decode = codec.encode, codec.decode
    payload = {"need": "clarification", "entity": "Entity_X", "n": 3}
    waiting: dict[int, trio.lowlevel.Task] = {}
    queued: list[tuple[int, str, str, int, dict[str, Any]]] = []
    flusher: list[trio.lowlevel.Task] = []  # the flusher, while it sleeps
    per_task = n // _REQUESTERS
    send, reschedule = near.send, trio.lowlevel.reschedule

    async def dispatch() -> None:
        while True:
            for message in decode(await near.receive_batch()):
                reschedule(waiting.pop(message.id), Value(None))

    async def flush() -> None:
        while True:
            if not queued:
                flusher.append(trio.lowlevel.current_task())
                await trio.lowlevel.wait_task_rescheduled(_park_abort)
            for frame in encode(queued):
                send(frame)
            queued.clear()

    async def requester(who: int) -> None:
        current = trio.lowlevel.current_task()
        for k in range(per_task):
            ident = who * per_task + k
            waiting[ident] = current
            queued.append((REQUEST, _SENDER, _TARGET, ident, payload))
            if flusher:
                reschedule(flusher.pop(), Value(None))
            await trio.lowlevel.wait_task_rescheduled(_park_abort)

    return await _timed(requester, dispatch, flush)


async def _transport_round(sizes: Sizes) -> dict[str, float]:
    """One round of questions 1 and 4: every far process started once, then blocks of each
    measurement in turn, so that a burst of load hits all of them alike. Sequential figures
    are p50s (µs), concurrent ones req/s over all their blocks."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    seq: dict[str, list[int]] = {}
    busy: dict[str, float] = {}
    done = 0
    try:
        async with AsyncExitStack() as stack:
            raw = await trio.to_thread.run_sync(RawEcho)
            stack.callback(raw.close)
            legs = {
                f"both_{d}": await _open_leg(stack, ctx, d, ["bridged", d, "NEAR"])
                for d in DOORBELLS
            }
            legs["near_only"] = await _open_leg(stack, ctx, "eventfd", ["raw", "NEAR"])
            repliers = {
                "requests64": await _open_leg(stack, ctx, "eventfd", ["reply", "eventfd", "NEAR"]),
                "requests64_long": await _open_leg(
                    stack, ctx, "eventfd", ["reply", "eventfd", "NEAR", str(LONG_SWITCH)]
                ),
            }
            packer = await _open_leg(stack, ctx, "eventfd", ["packed", "eventfd", "NEAR"])
            conc_block = max(_REQUESTERS, sizes.conc_n // sizes.blocks)
            for _ in range(sizes.blocks):
                # raw pyzmq blocks this (the Trio) thread while the bridges sleep: as alone
                seq.setdefault("raw", []).extend(raw.round_trips(sizes.block))
                for name, leg in legs.items():
                    seq.setdefault(name, []).extend(await _sequential(leg.near, sizes.block))
                busy["raw_conc"] = busy.get("raw_conc", 0.0) + conc_block / raw.in_flight(
                    conc_block
                )
                both = legs["both_eventfd"].near
                busy["echo64"] = busy.get("echo64", 0.0) + await _echo64(both, conc_block)
                for name, leg in repliers.items():
                    busy[name] = busy.get(name, 0.0) + await _requests64(
                        leg.near, conc_block, long_switch=name.endswith("_long")
                    )
                busy["packed64"] = busy.get("packed64", 0.0) + await _packed64(
                    packer.near, conc_block
                )
                done += conc_block // _REQUESTERS * _REQUESTERS
    finally:
        ctx.term()
    figures = {name: percentile(values, 50) / 1000 for name, values in seq.items()}
    figures["raw_p50"] = figures.pop("raw")
    figures.update({name: done / seconds for name, seconds in busy.items()})
    # raw in_flight times exactly conc_block requests; the others a multiple of 64 of them
    figures["raw_conc"] = sizes.blocks * conc_block / busy["raw_conc"]
    return figures


# -- 2: two loops -------------------------------------------------------------------------------
_TO_ASYNCIO = ("call_soon_threadsafe", "add_reader")
_FROM_ASYNCIO = [
    (doorbell, back)
    for doorbell in ("eventfd", "run_sync_soon")
    for back in ("call_soon_threadsafe", "add_reader")
]


def _variants(crossings: Crossings) -> dict[str, Callable[[int], Awaitable[list[float]]]]:
    out: dict[str, Callable[[int], Awaitable[list[float]]]] = {}
    for post in _TO_ASYNCIO:
        for task in (False, True):
            name = f"{'task' if task else 'callback'}/{post}"
            out[name] = partial(crossings.measure_to_asyncio, post=post, task=task)
    for doorbell, back in _FROM_ASYNCIO:
        out[f"call/{doorbell}/{back}"] = partial(
            crossings.measure_from_asyncio, doorbell=doorbell, back=back
        )
    return out


async def _loops_round(sizes: Sizes) -> dict[str, float]:
    """p50 (seconds) of the bare echo and of every crossing, in alternating blocks. The bare
    echo runs on this (the Trio) thread while both loops sleep: two plain threads."""
    samples: dict[str, list[float]] = {"bare": []}
    with asyncio_thread() as loop, thread_echo() as echo:
        async with Crossings(loop) as crossings:
            variants = _variants(crossings)
            for measure in variants.values():  # warm-up
                await measure(sizes.block)
            echo.round_trips(sizes.block)
            for _ in range(sizes.blocks):
                samples["bare"] += echo.round_trips(sizes.block)
                for name, measure in variants.items():
                    samples.setdefault(name, []).extend(await measure(sizes.block))
    return {name: percentile(values, 50) for name, values in samples.items()}


# -- 3: codec per notification ------------------------------------------------------------------
def _codec_round(sizes: Sizes) -> dict[str, tuple[float, float]]:
    """ns per message (encode, decode) of every candidate, interleaved, 64 messages a call."""
    payloads = [{"i": i} for i in range(64)]
    candidates: dict[str, Callable[[], object]] = {}
    names = []

    def encoding(codec: Codec) -> list[bytes]:
        return codec.encode([(NOTIFY, _SENDER, _TARGET, j, p) for j, p in enumerate(payloads)])

    for make in CODECS:
        codec = make()
        frames = encoding(codec)
        got = codec.decode(frames)
        if [m.data for m in got] != payloads or [m.id for m in got] != list(range(64)):
            raise RuntimeError(f"{codec.name} does not round-trip")
        candidates[f"{codec.name}|enc"] = partial(encoding, codec)
        candidates[f"{codec.name}|dec"] = partial(codec.decode, frames)
        names.append(codec.name)
    timings = _time_ns(candidates, sizes.codec_n // 5)
    return {name: (timings[f"{name}|enc"] / 64, timings[f"{name}|dec"] / 64) for name in names}


# -- the answers --------------------------------------------------------------------------------
def _ratio_note(ratios: list[float]) -> str:
    return "per round: " + ", ".join(f"{r:.2f}" for r in ratios)


def _transport_results(rounds: list[dict[str, float]]) -> list[Result]:
    def med(key: str) -> float:
        return median([r[key] for r in rounds])

    raw_p50 = med("raw_p50")
    results = [
        Result(
            "floor: raw pyzmq echo p50 (the comparison, same rounds)",
            raw_p50,
            "µs",
            "baseline",
            True,
            "bench_transport's DEALER/ROUTER echo, far process",
        )
    ]
    for doorbell in DOORBELLS:
        key = f"both_{doorbell}"
        ratios = [r[key] / r["raw_p50"] for r in rounds]
        results.append(
            Result(
                f"floor: bridged echo p50, both nodes bridged, {doorbell} doorbell",
                med(key),
                "µs",
                "report",
                True,
                f"{median(ratios):.2f}x raw; {_ratio_note(ratios)}",
            )
        )
    best = [min(r[f"both_{d}"] for d in DOORBELLS) / r["raw_p50"] for r in rounds]
    ratio = median(best)
    results.append(
        Result(
            "floor: bridged echo p50 / raw pyzmq echo p50, both nodes bridged (cheapest doorbell)",
            ratio,
            "x",
            f"target <= {P50_TARGET:g}",
            ratio <= P50_TARGET,
            f"ok = the target leaves room above this floor; {_ratio_note(best)}",
        )
    )
    near = [r["near_only"] / r["raw_p50"] for r in rounds]
    results.append(
        Result(
            "floor: bridged echo p50 / raw pyzmq echo p50, near node bridged, far raw pyzmq",
            median(near),
            "x",
            "report",
            True,
            f"p50 {med('near_only'):.1f} µs (eventfd); {_ratio_note(near)}",
        )
    )
    raw_conc = med("raw_conc")
    echo = [r["echo64"] / r["raw_conc"] for r in rounds]
    requests = [r["requests64"] / r["raw_conc"] for r in rounds]
    long = [r["requests64_long"] / r["raw_conc"] for r in rounds]
    packed = [r["packed64"] / r["raw_conc"] for r in rounds]
    cheapest = [max(v) for v in zip(requests, long, packed, strict=True)]
    results += [
        Result(
            "floor: raw pyzmq 64 in flight (the comparison, same rounds)",
            raw_conc,
            "req/s",
            "baseline",
            True,
        ),
        Result(
            "floor: 64 requesters through two bridged nodes, echo / raw 64 in flight",
            median(echo) * 100,
            "%",
            "report",
            True,
            f"{med('echo64'):,.0f} req/s; no codec; {_ratio_note(echo)}",
        ),
        Result(
            "floor: 64 requesters through two bridged nodes, with codec / raw 64 in flight",
            median(cheapest) * 100,
            "%",
            f"target >= {SHARE_TARGET:.0%}",
            median(cheapest) >= SHARE_TARGET,
            f"the fastest variant per round; {_ratio_note(cheapest)}; a frame per message "
            f"{med('requests64'):,.0f} req/s ({median(requests):.0%}), the same with a "
            f"{LONG_SWITCH * 1000:g} ms switch interval {med('requests64_long'):,.0f} req/s "
            f"({median(long):.0%}), a frame per batch {med('packed64'):,.0f} req/s "
            f"({median(packed):.0%})",
        ),
    ]
    return results


def _loops_results(rounds: list[dict[str, float]]) -> list[Result]:
    bare = median([r["bare"] for r in rounds]) * 1e6
    results = [
        Result(
            "floor: bare thread round trip p50 (the comparison, same rounds)",
            bare,
            "µs",
            "baseline",
            True,
            "_threads.thread_echo, blocks alternating with the crossings",
        )
    ]
    groups = (
        ("callback", "floor: Trio -> asyncio callback -> Trio p50 / bare", "report", None),
        (
            "task",
            "floor: Trio -> asyncio Task (no-op coroutine) -> Trio p50 / bare",
            f"target <= {RUN_ASYNCIO_TARGET:g} (run_asyncio)",
            RUN_ASYNCIO_TARGET,
        ),
        (
            "call",
            "floor: asyncio task -> Trio -> asyncio p50 / bare",
            f"target gap <= {GAP_TARGET:g} (asyncio-hosted request)",
            GAP_TARGET,
        ),
    )
    for prefix, question, target, limit in groups:
        names = [name for name in rounds[0] if name.startswith(prefix + "/")]
        per_variant = {name: median([r[name] / r["bare"] for r in rounds]) for name in names}
        cheapest = [min(r[name] for name in names) / r["bare"] for r in rounds]
        ratio = median(cheapest)
        variants = "; ".join(
            f"{name.split('/', 1)[1]} {median([r[name] for r in rounds]) * 1e6:.1f} µs "
            f"({per_variant[name]:.2f}x)"
            for name in names
        )
        results.append(
            Result(
                question,
                ratio,
                "x",
                target,
                limit is None or ratio <= limit,
                f"cheapest variant per round; {_ratio_note(cheapest)}; {variants}",
            )
        )
    return results


def _codec_results(
    codecs: list[dict[str, tuple[float, float]]], streams: list[float]
) -> list[Result]:
    names = list(codecs[0])
    total = {name: median([sum(c[name]) for c in codecs]) for name in names}
    best = min(names, key=total.__getitem__)
    single = min((n for n in names if "one frame per message" in n), key=total.__getitem__)
    enc = median([c[best][0] for c in codecs])
    dec = median([c[best][1] for c in codecs])
    stream = median(streams)

    def shares(name: str, combine: Callable[[tuple[float, float]], float]) -> list[float]:
        """The codec's time added to the bridge stream's time per frame."""
        return [1 / (1 + s * combine(c[name]) * 1e-9) for c, s in zip(codecs, streams, strict=True)]

    # encode and decode on two cores at once (the generous case), or one after the other
    pipelined, serial = shares(best, max), shares(best, sum)
    single_pipelined, single_serial = shares(single, max), shares(single, sum)
    others = "; ".join(f"{name} {total[name]:.0f}" for name in names if name != best)
    return [
        Result(
            "floor: notify encode + decode per message, cheapest codec",
            enc + dec,
            "ns",
            "report",
            True,
            f"{best}: encode {enc:.0f} + decode {dec:.0f} ns = "
            f"{1e9 / (enc + dec):,.0f} msg/s on one thread; others (ns): {others}",
        ),
        Result(
            "floor: bridge-only stream (the comparison, same rounds)",
            stream,
            "msg/s",
            "baseline",
            True,
            "bench_transport's bridge-only one-way stream",
        ),
        Result(
            "floor: notify stream / bridge-only stream, codec added, encode || decode",
            median(pipelined) * 100,
            "%",
            f"target >= {SHARE_TARGET:.0%}",
            median(pipelined) >= SHARE_TARGET,
            f"1 / (1 + stream rate x max(encode, decode)); {_ratio_note(pipelined)}",
        ),
        Result(
            "floor: notify stream / bridge-only stream, codec added, encode + decode",
            median(serial) * 100,
            "%",
            "report",
            True,
            f"1 / (1 + stream rate x (encode + decode)); {_ratio_note(serial)}",
        ),
        Result(
            "floor: the same with one frame per message, encode || decode",
            median(single_pipelined) * 100,
            "%",
            "report",
            True,
            f"{single}: {total[single]:.0f} ns; encode + decode serial "
            f"{median(single_serial):.1%}; {_ratio_note(single_pipelined)}",
        ),
    ]


def answer(sizes: Sizes) -> list[Result]:
    """Measure every floor with ``sizes`` (``run`` picks quick or full sizes)."""
    transport: list[dict[str, float]] = []
    loops: list[dict[str, float]] = []
    codecs: list[dict[str, tuple[float, float]]] = []
    streams: list[float] = []
    for i in range(sizes.rounds):  # every question's parts interleaved within a round
        label = f"round {i + 1} of {sizes.rounds}"
        step(f"{label}: raw pyzmq and bridged echoes, 64 requesters")
        transport.append(trio.run(_transport_round, sizes))
        step(f"{label}: two-loop crossings and bare round trips")
        loops.append(trio.run(_loops_round, sizes))
        step(f"{label}: codecs and the bridge-only stream")
        codecs.append(_codec_round(sizes))
        bridge = trio.run(_bridge_figures, 256, sizes.stream_n)
        if bridge["stream_lost"] or bridge["stream_dropped"]:
            raise RuntimeError(f"the bridge-only stream lost frames: {bridge}")
        streams.append(bridge["stream_rate"])
    return _transport_results(transport) + _loops_results(loops) + _codec_results(codecs, streams)


def run(quick: bool) -> list[Result]:
    """Answer the floor questions (see the module docstring)."""
    return answer(QUICK if quick else FULL)
