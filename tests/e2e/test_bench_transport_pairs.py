"""The transport question's target ratios at the smallest size a test can afford: a raw pyzmq
echo, a bridge peer and a far p2p node, each a real process on loopback, measured in pairs of
adjacent blocks. The results are well formed, nothing is lost, and each verdict agrees with
its own figure and target (the timings themselves belong to the benchmark)."""

from __future__ import annotations

import math

import pytest
import trio

from jarvis_trio.bench.questions import bench_transport
from jarvis_trio.bench.results import Result

PAIRS = 2


@pytest.fixture(scope="module")
def ratios() -> dict[str, list[float]]:
    return trio.run(bench_transport._paired_ratios, PAIRS, 20, 128, 1_000)


def test_every_ratio_is_measured_once_per_pair(ratios: dict[str, list[float]]) -> None:
    for key in ("p50", "conc", "stream"):
        assert len(ratios[key]) == PAIRS, key
        assert all(math.isfinite(r) and r > 0 for r in ratios[key]), (key, ratios[key])


def test_nothing_was_lost_and_no_request_failed(ratios: dict[str, list[float]]) -> None:
    assert ratios["lost"] == [0.0]


def test_the_rows_carry_the_median_and_agree_with_their_targets(
    ratios: dict[str, list[float]],
) -> None:
    rows = bench_transport.target_rows(ratios)
    by_name = {row.question: row for row in rows}
    p50 = by_name["PeerClient sequential p50 / raw pyzmq p50 (adjacent blocks)"]
    conc = by_name["PeerClient 64 requesters / raw pyzmq 64 in flight (adjacent blocks)"]
    stream = by_name["PeerClient notify stream / bridge-only stream (adjacent blocks)"]
    assert p50.figure == pytest.approx(sum(ratios["p50"]) / PAIRS)  # the median of two
    assert p50.ok == (p50.figure <= 2)
    assert conc.ok == (conc.figure >= 80)
    assert stream.ok == (stream.figure >= 80)
    assert all(f"median of {PAIRS} pairs" in row.note for row in rows)


def test_a_loss_fails_the_stream_target_whatever_the_rate() -> None:
    lossy = {"p50": [1.0], "conc": [1.0], "stream": [1.0], "lost": [3.0]}
    rows: list[Result] = bench_transport.target_rows(lossy)
    stream = rows[2]
    assert stream.figure == 100
    assert not stream.ok
    assert stream.note.startswith("3 lost or failed")
