"""OpenTelemetry spans on the same-node route (an SDK in a process of its own: OpenTelemetry
allows one tracer provider per process), the traceparent's wire forms, and the cost when no
SDK is configured (nothing is traced, nothing is carried)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jarvis_trio import _tracing
from jarvis_trio.cluster.wire import to_envelope, to_message
from jarvis_trio.mailbox._stream import Outgoing, entry_message
from jarvis_trio.peers.messages import REQUEST, IncomingMessage
from jarvis_trio.transport import decode_frame, encode_envelope

HERE = Path(__file__).resolve().parent
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_every_sending_call_makes_a_client_span_parent_of_its_server_span(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "trace_one_node.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spans = json.loads(done.stdout)
    by_id = {s["span_id"]: s for s in spans}
    clients = [s for s in spans if s["kind"] in ("CLIENT", "PRODUCER")]
    assert sorted(s["name"].split()[0] for s in clients) == [
        "ask_async",
        "broadcast",
        "mailbox",
        "notify",
        "request",
    ]
    servers = [s for s in spans if s["kind"] in ("SERVER", "CONSUMER")]
    # each client span has exactly one server span under it (broadcast: one agent)
    for client in clients:
        children = [s for s in servers if s["parent_id"] == client["span_id"]]
        assert len(children) == 1, (client, spans)
        assert children[0]["trace_id"] == client["trace_id"]
    assert all(by_id.get(s["parent_id"]) in clients for s in servers)


def test_without_an_sdk_nothing_is_traced() -> None:
    # this process has the API (the dev extra) but no SDK configured
    assert not _tracing.active()


def test_traceparent_is_checked_when_it_comes_from_outside() -> None:
    parsed = _tracing.parse_traceparent(TRACEPARENT)
    assert parsed is not None and parsed.is_remote
    assert f"{parsed.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (
        None,
        42,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
    ):
        assert _tracing.parse_traceparent(bad) is None, bad


def test_the_traceparent_travels_in_the_envelope_and_the_mailbox_entry() -> None:
    message = IncomingMessage(
        "a-1", "n1", REQUEST, {"x": 1}, "req-1", 1.0, {"k": "v"}, "b-1", TRACEPARENT
    )
    frame = encode_envelope(to_envelope(message), 1 << 20)
    back = to_message("n1", decode_frame(frame, 1 << 20))
    assert back is not None and back.traceparent == TRACEPARENT
    assert back.context == {"k": "v"}  # never in the user's context
    plain = encode_envelope(
        to_envelope(IncomingMessage("a-1", "n1", REQUEST, {}, "req-2")), 1 << 20
    )
    assert plain.endswith(b",null]")  # no span, no traceparent
    earlier = b'\x01[2,"","a-1","req-3",0.0,null,{}]'  # a frame from before the field existed
    decoded = to_message("n1", decode_frame(earlier, 1 << 20))
    assert decoded is not None and decoded.traceparent is None

    traced = Outgoing("k", "m-1", "a-1", b'{"y": 2}', TRACEPARENT)
    untraced = Outgoing("k", "m-2", "a-1", b'{"y": 2}')
    held = entry_message("b-1", b"1-0", {b"m": traced.envelope}, 1)
    assert held is not None and held.message.traceparent == TRACEPARENT
    old = entry_message("b-1", b"1-1", {b"m": untraced.envelope}, 1)
    assert old is not None and old.message.traceparent is None
    assert old.message.payload == {"y": 2}
