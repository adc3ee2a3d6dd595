"""The far side of the transport benchmarks, run as a separate OS process.

``python -m jarvis_trio.bench.questions.transport_peer bridge`` opens a bridge on a free port,
prints ``PORT <n>`` and a line per command read from stdin:

* ``CONNECT <name> <port>``: connect to the benchmark's bridge; answers ``OK``;
* ``ECHO``: from now on send every received frame back to its sender;
* ``COUNT <n>``: count received frames until ``n`` arrived, then print ``COUNTED <n> <s>``
  (seconds from the first to the last frame);
* ``STATS``: print the bridge's counters as one JSON line.

``python -m jarvis_trio.bench.questions.transport_peer raw`` is a raw pyzmq ROUTER echo (the
baseline): it prints ``PORT <n>`` and echoes until it is terminated.
"""

from __future__ import annotations

import json
import sys
import time

import trio
import zmq

from jarvis_trio.transport import BridgeSettings, open_bridge


async def _bridge_main() -> None:
    async with open_bridge(BridgeSettings("peer")) as bridge:
        print(f"PORT {bridge.port}", flush=True)
        state: dict[str, object] = {"mode": "idle", "target": 0}

        async def serve() -> None:
            counted = 0
            first = 0.0
            while True:
                batch = await bridge.receive()
                if not batch:
                    return
                if state["mode"] == "echo":
                    for node, frame in batch:
                        await bridge.send(node, frame)
                elif state["mode"] == "count":
                    if counted == 0:
                        first = time.perf_counter()
                    counted += len(batch)
                    target = state["target"]
                    assert isinstance(target, int)
                    if counted >= target:
                        elapsed = time.perf_counter() - first
                        print(f"COUNTED {counted} {elapsed:.6f}", flush=True)
                        counted = 0
                        state["mode"] = "idle"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            stdin = trio.wrap_file(sys.stdin)
            async for line in stdin:
                words = line.split()
                if not words:
                    continue
                if words[0] == "CONNECT":
                    bridge.connect(words[1], "127.0.0.1", int(words[2]))
                    print("OK", flush=True)
                elif words[0] == "ECHO":
                    state["mode"] = "echo"
                    print("OK", flush=True)
                elif words[0] == "COUNT":
                    state["target"] = int(words[1])
                    state["mode"] = "count"
                    print("OK", flush=True)
                elif words[0] == "STATS":
                    print(json.dumps(bridge.stats()), flush=True)
            nursery.cancel_scope.cancel()


def _raw_main() -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(f"PORT {port}", flush=True)
    while True:
        router.send_multipart(router.recv_multipart())


if __name__ == "__main__":
    if sys.argv[1:] == ["raw"]:
        _raw_main()
    else:
        trio.run(_bridge_main)
