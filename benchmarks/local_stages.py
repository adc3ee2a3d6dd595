"""Where the CPU of one in-process request goes, stage by stage, against the Trio floor.

``python -m benchmarks.local_stages [--runs R] [--count N]`` runs, R times each: the Trio
floor of ``bench_core`` (two bare tasks handing a value back and forth), the sequential
in-process request of ``bench_core`` (CPU per request), and the same request through copies
of ``ClientCore.request`` and ``Agent._serve_inbox`` with a ``perf_counter_ns`` stamp between
their steps, and prints the median µs of every stage.

A sampling profiler cannot split a round trip this finely (a stage is a few hundred
nanoseconds), so the steps are stamped in place. The stamps cost something themselves (the
stamped total is printed next to the plain one: the difference is theirs, roughly 0.1-0.2 µs
per stage); read the stages as shares of the plain total. The two copies follow the hot path
of the library (a same-node request answered by the default loop, tracing off); when that
path changes, change them with it, or the figures describe code that no longer runs.
"""

from __future__ import annotations

import argparse
import collections
import math
import statistics
import sys
import tempfile
import time
from typing import Any

import trio
from sniffio import thread_local

from jarvis_trio import _tracing
from jarvis_trio import agent as agent_module
from jarvis_trio._logcontext import CURRENT_CORRELATION
from jarvis_trio.bench.questions import bench_core
from jarvis_trio.bench.questions._agents import Caller, Echo
from jarvis_trio.mesh import open_mesh
from jarvis_trio.payload import checked_context, checked_copy
from jarvis_trio.peers.client import PeerClient
from jarvis_trio.peers.messages import REQUEST, RESPONSE, IncomingMessage

_clock = time.perf_counter_ns

CALLER = (
    "thread and tracing checks, checkpoint_if_cancelled",
    "payload copy",
    "size check (JSON encode)",
    "route (cached)",
    "request id",
    "clock, pending entry, deadline queue",
    "per-role count, request message",
    "hand-over to the parked agent (reschedule)",
)
AGENT = (
    "logging context (ContextVar.set)",
    "tracing check",
    "handler coroutine",
    "reply copy",
    "reply size check",
    "reply message",
    "resolve: pending entry, reschedule the caller",
)
OTHERS = (
    "resumed: finally, latency metric",
    "(caller parked)",
    "agent loop: get_nowait, park up to its yield",
    "scheduler: caller parks -> agent runs",
    "(agent's stamp bookkeeping)",
)
NAMES = (*CALLER, *AGENT, *OTHERS)
_C, _A, _O = 0, len(CALLER), len(CALLER) + len(AGENT)
_acc = [0] * len(NAMES)  # ns per stage, summed (plain ints: the cheapest bookkeeping)
_marks = [0, 0]  # when the caller parked, when the agent finished its last message


async def _request(
    self: PeerClient,
    target: str,
    message: dict[str, Any],
    timeout: float = 30.0,
    context: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``ClientCore.request``'s same-node path, stamped."""
    s0 = _clock()
    assert thread_local.name == "trio"
    assert not (_tracing.OTEL_TRACE in sys.modules and _tracing.active())
    await trio.lowlevel.checkpoint_if_cancelled()
    s1 = _clock()
    router = self._router
    assert type(timeout) is float and 0 <= timeout < math.inf
    data = checked_copy(message)
    ctx: dict[str, Any] = {} if context is None else checked_context(context)
    s2 = _clock()
    if ctx or len(router.encode(data)) > router.max_message_size:
        router.check_size(data, ctx)
    s3 = _clock()
    found = self._resolve(target)
    assert found is not None
    info, inbox = found
    assert inbox is not None
    s4 = _clock()
    request_id = router.new_id("req-")
    s5 = _clock()
    entry = router.pending.open_request(request_id, info.node_id, router.now() + timeout)
    assert entry is not None
    s6 = _clock()
    traffic = router.traffic
    if traffic.enabled:
        traffic.by_role[info.role].sent += 1
    msg = IncomingMessage(
        self._agent_id, router.node_id, REQUEST, data, entry.key, time.time(), ctx, info.agent_id
    )
    s7 = _clock()
    try:
        assert inbox.put_nowait(msg)
        s8 = _clock()
        entry.task = trio.lowlevel.current_task()
        _marks[0] = _clock()
        reply: IncomingMessage | None = await trio.lowlevel.wait_task_rescheduled(entry.abort)
        s9 = _clock()
    finally:
        if not entry.done:
            entry.table.discard(entry.key)
    self._close_exchange(info, reply, msg, entry)
    s10 = _clock()
    acc = _acc
    acc[0] += s1 - s0
    acc[1] += s2 - s1
    acc[2] += s3 - s2
    acc[3] += s4 - s3
    acc[4] += s5 - s4
    acc[5] += s6 - s5
    acc[6] += s7 - s6
    acc[7] += s8 - s7
    acc[_O] += s10 - s9
    acc[_O + 1] += s9 - s8
    return None if reply is None else reply.data


async def _serve_inbox(self: agent_module.Agent) -> None:
    """``Agent._serve_inbox``'s same-node request path, stamped."""
    inbox = self._inbox
    peers = self.peers
    router = peers._router
    node = peers.node_id
    task = trio.lowlevel.current_task()
    abort = inbox.receiver_abort(task)
    while True:
        message = inbox.get_nowait()
        if message is None:
            parks = _clock()
            message = await inbox.park(task, abort)
            a0 = _clock()
            if _marks[1]:
                _acc[_O + 2] += parks - _marks[1]
            if _marks[0]:
                _acc[_O + 3] += a0 - _marks[0]
                _marks[0] = 0
            if message is None:
                return
        else:
            a0 = _clock()
        CURRENT_CORRELATION.set(message.correlation_id)
        a1 = _clock()
        _tracing.active()
        a2 = _clock()
        reply = await self.on_peer_request(message)
        assert reply is not None
        a3 = _clock()
        data = checked_copy(reply, what="response")
        context = message.context
        ctx: dict[str, Any] = checked_context(context) if context else {}
        a4 = _clock()
        if ctx or len(router.encode(data)) > router.max_message_size:
            router.check_size(data, ctx)
        a5 = _clock()
        response = IncomingMessage(
            peers._agent_id,
            node,
            RESPONSE,
            data,
            message.correlation_id,
            time.time(),
            ctx,
            message.sender,
        )
        a6 = _clock()
        router.pending.resolve(response)
        a7 = _clock()
        acc = _acc
        acc[_A] += a1 - a0
        acc[_A + 1] += a2 - a1
        acc[_A + 2] += a3 - a2
        acc[_A + 3] += a4 - a3
        acc[_A + 4] += a5 - a4
        acc[_A + 5] += a6 - a5
        acc[_A + 6] += a7 - a6
        served = _marks[1] = _clock()
        acc[_O + 4] += served - a7


def _requests(count: int, folder: str) -> dict[str, float]:
    """CPU µs per request; wall ns per request and per stage (stages when the stamped
    copies are installed)."""
    out: dict[str, float] = {}

    async def main() -> None:
        async with open_mesh(
            {"node_name": "bench", "blob_storage_path": folder}, env_file=None, environ={}
        ) as mesh:
            await mesh.start_agent(Echo)
            caller = await mesh.start_agent(Caller)
            request = caller.peers.request
            for n in range(2000):
                await request("echo", {"n": n})
            _acc[:] = [0] * len(NAMES)
            _marks[:] = [0, 0]
            cpu = time.process_time()
            wall = time.perf_counter()
            for n in range(count):
                await request("echo", {"n": n})
            out["wall per request"] = (time.perf_counter() - wall) / count * 1e9  # ns
            out["CPU per request"] = (time.process_time() - cpu) / count * 1e6
            for name, total in zip(NAMES, _acc, strict=True):
                out[name] = total / count  # ns

    trio.run(main)
    return out


def _scaled(stamped: dict[str, float], plain_cpu: float) -> dict[str, float]:
    """Stage times of a stamped run as shares of its wall time per request, applied to the
    plain run's CPU per request (the stamps' own cost and any time the machine gave to other
    work are spread over the stages in proportion)."""
    wall = stamped["wall per request"]
    stages = dict(stamped)
    agent_total = sum(stages[name] for name in AGENT)
    stages[BACK] = (
        stages["(caller parked)"]
        - stages["scheduler: caller parks -> agent runs"]
        - agent_total
        - stages["agent loop: get_nowait, park up to its yield"]
        - stages["(agent's stamp bookkeeping)"]
    )
    named = (*CALLER, *AGENT, *OTHERS[:1], *OTHERS[2:4], BACK)
    stages[REST] = wall - sum(stages[name] for name in named)
    return {name: stages[name] / wall * plain_cpu for name in (*named, REST)}


BACK = "scheduler: agent parks -> caller runs (by difference)"
REST = "the benchmark's loop, stamps and bookkeeping (the rest)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    figures: dict[str, list[float]] = collections.defaultdict(list)
    plain_serve = agent_module.Agent._serve_inbox
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.runs):
            figures["floor"].append(1e6 / bench_core.trio_floor(args.count)[1])
            plain = _requests(args.count, folder)["CPU per request"]
            figures["plain"].append(plain)
            setattr(PeerClient, "request", _request)  # noqa: B010 - a class attribute swapped
            setattr(agent_module.Agent, "_serve_inbox", _serve_inbox)  # noqa: B010
            try:
                stamped = _requests(args.count, folder)
            finally:
                delattr(PeerClient, "request")
                setattr(agent_module.Agent, "_serve_inbox", plain_serve)  # noqa: B010
            for name, value in _scaled(stamped, plain).items():
                figures[name].append(value)
    med = {name: statistics.median(values) for name, values in figures.items()}
    floor, plain = med["floor"], med["plain"]
    print(f"medians of {args.runs} runs of {args.count:,} sequential requests")
    print(f"  {floor:6.2f} µs  Trio floor: CPU per round trip of two bare tasks")
    print(f"  {plain:6.2f} µs  request: CPU per request ({floor / plain:.1%} of the floor's rate)")
    print("per stage, its share of the stamped run's wall time applied to the CPU per request:")
    groups = (
        ("caller", (*CALLER, OTHERS[0])),
        ("agent", (*AGENT, OTHERS[2])),
        ("between the two tasks", (OTHERS[3], BACK)),
        ("other", (REST,)),
    )
    for title, names in groups:
        print(f"{title}: {sum(med[name] for name in names):.2f} µs")
        for name in names:
            print(f"  {med[name]:6.2f}  {name}")


if __name__ == "__main__":
    main()
