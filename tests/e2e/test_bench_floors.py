"""The floors question at the smallest size a test can afford: real far processes on
loopback, a real asyncio loop beside a real Trio run, every codec round-tripping; the results
are well formed and each verdict agrees with its own figure and target (timings themselves
are not checked: they belong to the benchmark)."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

import pytest

from jarvis_trio.bench.questions import _floor_codec, bench_floors, standard
from jarvis_trio.bench.questions._floor_codec import Codec
from jarvis_trio.bench.results import Result

TINY = bench_floors.Sizes(
    rounds=1, block=20, blocks=2, codec_n=10, stream_n=2_000, conc_n=2 * bench_floors._REQUESTERS
)


@pytest.fixture(scope="module")
def results() -> list[Result]:
    answered = bench_floors.answer(TINY)
    # the I/O threads, the asyncio loop's thread and the echo thread all ended (Trio's own
    # idle worker threads stay cached, as they do after any trio.run)
    ours = ("floors-io", "floors-asyncio", "bare-echo")
    assert not [t.name for t in threading.enumerate() if t.name in ours]
    return answered


def test_the_question_is_registered_as_floors() -> None:
    names = [module.name for module in standard()]
    assert "bench_floors" in names
    loaded = next(m for m in standard() if m.name == "bench_floors").load()
    assert loaded is bench_floors.run


def test_every_floor_is_reported_once_with_a_finite_figure(results: list[Result]) -> None:
    questions = [r.question for r in results]
    assert len(questions) == len(set(questions)) == 18
    assert all(q.startswith("floor: ") for q in questions)
    for r in results:
        assert math.isfinite(r.figure) and r.figure > 0, r
        assert r.unit in {"µs", "x", "%", "ns", "req/s", "msg/s"}, r
        assert Result.from_json(r.to_json()) == r
    # what the targets compare with, measured in the same run
    baselines = sorted(r.question.split(" (")[0] for r in results if r.target == "baseline")
    assert baselines == [
        "floor: bare thread round trip p50",
        "floor: bridge-only stream",
        "floor: raw pyzmq 64 in flight",
        "floor: raw pyzmq echo p50",
    ]


def test_each_verdict_follows_from_its_figure_and_target(results: list[Result]) -> None:
    targeted = [r for r in results if r.target.startswith("target")]
    assert len(targeted) == 5
    for r in targeted:
        match = re.search(r"(<=|>=) ([\d.]+)(%?)", r.target)
        assert match, r.target
        bound = float(match[2])
        assert r.ok == (r.figure <= bound if match[1] == "<=" else r.figure >= bound), r


def test_the_doorbells_and_variants_are_all_measured(results: list[Result]) -> None:
    text = " ".join(r.question + " " + r.note for r in results)
    for doorbell in ("eventfd", "socketpair", "run_sync_soon"):
        assert f"both nodes bridged, {doorbell} doorbell" in text
    for variant in ("call_soon_threadsafe", "add_reader", "eventfd/add_reader"):
        assert variant in text
    assert "a frame per batch" in text and "switch interval" in text


@pytest.mark.parametrize("make", _floor_codec.CODECS)
def test_every_codec_refuses_what_json_cannot_carry(make: Callable[[], Codec]) -> None:
    codec = make()
    good = [(1, "a", "b", 0, {"n": [1, {"x": 2.5}], "s": "é"}), (1, "a", "b", 1, {"i": 1})]
    assert [m.data for m in codec.decode(codec.encode(good))] == [good[0][4], good[1][4]]
    for bad in ({"x": float("nan")}, {"x": b"raw"}, {1: "int key"}, {"x": 1 << 64}):
        with pytest.raises(ValueError):
            codec.encode([(1, "a", "b", 0, bad)])
