"""Property: no inbound ZeroMQ frame escapes as an exception. A live node (real UDP and
ZeroMQ sockets on 127.0.0.1, running in its own Trio loop on a thread) takes hypothesis-
generated traffic from a raw DEALER: random bytes, bit-flipped envelopes, well-formed
envelopes with extreme field values, multipart messages, truncated packs. After every
example a sentinel notification must still reach the node's agent, in order: the inbound
path dropped and counted the bad frames and kept serving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis_trio.mesh import open_mesh
from jarvis_trio.transport.envelope import WIRE_VERSION
from jarvis_trio.transport.iothread import pack_frames

from .conftest import FAST_SWIM, Echo, cluster_of


@dataclass
class LiveNode:
    token: trio.lowlevel.TrioToken
    port: int
    echo: Echo
    stats: Any
    stop: trio.Event


@pytest.fixture
def live_node(tmp_path: Path) -> Iterator[LiveNode]:
    ready = threading.Event()
    holder: list[LiveNode] = []
    failure: list[BaseException] = []

    async def run() -> None:
        config = {
            "p2p_enabled": True,
            "bind_port": 0,
            "node_name": "target",
            "blob_storage_path": str(tmp_path / "blobs"),
            **FAST_SWIM,
        }
        async with open_mesh(config, agents=[Echo], env_file=None, environ={}) as mesh:
            echo = mesh.agents[0]
            assert isinstance(echo, Echo)
            cluster = cluster_of(mesh)
            node = LiveNode(
                trio.lowlevel.current_trio_token(),
                cluster.bridge.port,
                echo,
                cluster.stats,
                trio.Event(),
            )
            holder.append(node)
            ready.set()
            await node.stop.wait()

    def main() -> None:
        try:
            trio.run(run)
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="fuzzed-node", daemon=True)
    thread.start()
    assert ready.wait(30), "the node did not start"
    assert not failure, failure
    node = holder[0]
    yield node
    trio.from_thread.run_sync(node.stop.set, trio_token=node.token)
    thread.join(30)
    assert not failure, failure


def envelope(kind: object, target: object, sender: object, cid: object, ts: object, ctx: object,
             data: object) -> bytes:  # fmt: skip
    return bytes([WIRE_VERSION]) + msgspec.json.encode([kind, target, sender, cid, ts, ctx, data])


texts = st.one_of(
    st.text(max_size=20), st.sampled_from(["", "echo", "x" * 5000, "\x00", "fuzz-agent"])
)
extreme_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63, 2**64, 1e308, -1e308, 1e-320]),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), extreme_numbers, st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """Well-formed JSON arrays in the envelope's shape, with extreme or wrong field values."""
    kind = draw(st.one_of(st.integers(-2, 8), st.sampled_from([2**64, 1.5, "1", None])))
    fields = [
        kind,
        draw(st.one_of(texts, json_values)),
        draw(st.one_of(texts, json_values)),
        draw(st.one_of(st.none(), texts, extreme_numbers)),
        draw(st.one_of(extreme_numbers, texts)),
        draw(st.one_of(st.none(), json_values)),
        draw(json_values),
    ]
    if draw(st.booleans()):  # deep nesting, past what a local send accepts
        depth = draw(st.integers(60, 3000))
        fields[6] = {"a": 1}
        raw = msgspec.json.encode(fields[:6])[:-1] + b"," + b'{"a":' * depth + b"1" + b"}" * depth
        return bytes([WIRE_VERSION]) + raw + b"]"
    encoded = bytes([WIRE_VERSION]) + msgspec.json.encode(fields)
    if draw(st.booleans()):  # a bit flipped somewhere
        at = draw(st.integers(0, len(encoded) - 1))
        flipped = bytearray(encoded)
        flipped[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    return encoded


frames = st.one_of(st.binary(max_size=256), envelopes())
messages = st.lists(
    st.one_of(
        st.lists(frames, min_size=1, max_size=4).map(
            lambda f: [m for m, _ in pack_frames(f, 4096)]
        ),
        st.lists(st.binary(max_size=64), min_size=2, max_size=3),  # multipart: malformed
        st.binary(max_size=64).map(lambda b: [b]),  # truncated or random pack
    ),
    min_size=1,
    max_size=6,
)


async def wait_noted(echo: Echo, count: int) -> None:
    with trio.fail_after(10):
        await echo.noted.wait_value(lambda n: n >= count)


@given(batch=messages)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
def test_no_inbound_frame_escapes(live_node: LiveNode, batch: list[list[bytes]]) -> None:
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.ROUTING_ID, b"fuzzer")
    dealer.setsockopt(zmq.LINGER, 2000)
    try:
        dealer.connect(f"tcp://127.0.0.1:{live_node.port}")
        for parts in batch:
            dealer.send_multipart(parts)
        before = live_node.echo.noted.value
        sentinel = envelope(1, live_node.echo.agent_id, "fuzz-agent", None, 1.0, None, {"ok": 1})
        dealer.send(pack_frames([sentinel], 4096)[0][0])
        trio.from_thread.run(wait_noted, live_node.echo, before + 1, trio_token=live_node.token)
    finally:
        dealer.close()
    stats = live_node.stats()
    assert stats["inbound_errors"] == 0, stats  # every bad frame was refused, none crashed
