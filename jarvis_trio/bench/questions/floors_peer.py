"""The far side of ``bench_floors``' ZeroMQ echo, run as a separate OS process.

``python -m jarvis_trio.bench.questions.floors_peer bridged DOORBELL NEAR_PORT`` is a far node
built the constrained way (:mod:`._floor_bridge`: its I/O thread polls the ROUTER and hands
frames to its Trio thread, which echoes them on its own DEALER to ``NEAR_PORT``);
``... reply DOORBELL NEAR_PORT`` is the bridged node answering requests instead of echoing
frames: it decodes each request and encodes a reply with :mod:`._floor_codec`'s cheapest
one-frame-per-message codec; ``... packed DOORBELL NEAR_PORT`` the same with each batch of
requests arriving in one frame and the replies to a batch leaving in one frame (the packed
codec); ``... raw NEAR_PORT`` is the echo in plain pyzmq on one thread
(ROUTER in, DEALER out), so that a measurement can isolate the near side's bridge. Each
prints ``PORT <n>`` (its ROUTER) and answers until it is killed. A fourth argument to the
bridged modes sets the interpreter's switch interval (seconds) for the whole process.
"""

from __future__ import annotations

import sys

import trio
import zmq

from jarvis_trio.bench.questions._floor_bridge import open_endpoint
from jarvis_trio.bench.questions._floor_codec import REPLY, packed_codec, request_codec


async def _bridged(doorbell: str, near_port: int, mode: str) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    encode, decode = request_codec()
    packed = packed_codec()
    async with open_endpoint(ctx, doorbell) as far:
        far.connect(near_port)
        print(f"PORT {far.port}", flush=True)
        send = far.send
        while True:
            frames = await far.receive_batch()
            if mode == "reply":
                for request in decode(frames):
                    send(encode(REPLY, request.target, request.sender, request.id, request.data))
            elif mode == "packed":
                replies = [(REPLY, m.target, m.sender, m.id, m.data) for m in packed.decode(frames)]
                for frame in packed.encode(replies):
                    send(frame)
            else:
                for frame in frames:
                    send(frame)


def _raw(near_port: int) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{near_port}")
    print(f"PORT {port}", flush=True)
    recv, send = router.recv, dealer.send
    while True:
        recv()
        send(recv())


if __name__ == "__main__":
    if len(sys.argv) > 4:
        sys.setswitchinterval(float(sys.argv[4]))
    if sys.argv[1] == "raw":
        _raw(int(sys.argv[2]))
    else:
        trio.run(_bridged, sys.argv[2], int(sys.argv[3]), sys.argv[1])
