"""The A/B table's pure logic: which way is better, the oriented ratio, medians per side."""

from __future__ import annotations

import math

import pytest

from benchmarks.ab_revisions import HIGHER, LOWER, format_rows, orientation, oriented_ratio, rows
from jarvis_trio.bench.results import Result


def _r(question: str, figure: float, unit: str = "req/s", target: str = "≥ 50,000") -> Result:
    return Result(question, figure, unit, target, True)


@pytest.mark.parametrize(
    ("target", "unit", "expected"),
    [
        ("≥ 50,000", "req/s", HIGHER),
        (">= 0.8", "x", HIGHER),
        ("≤ 60 µs", "µs", LOWER),
        ("<= 2", "x", LOWER),
        ("0", "", LOWER),
        ("0, 0", "false deaths", LOWER),
        ("report", "msg/s", HIGHER),
        ("informative", "ns", LOWER),
        ("baseline", "req/s", HIGHER),
        ("reported", "MiB", LOWER),
        ("bounded by pending", "slots", LOWER),
        ("≈ 1 (noise)", "ratio to quiet", 0),
        ("—", "x", 0),
    ],
)
def test_orientation_reads_the_target_then_the_unit(target: str, unit: str, expected: int) -> None:
    assert orientation(target, unit) == expected


def test_ratio_above_one_means_head_is_better_in_both_directions() -> None:
    assert oriented_ratio(100.0, 120.0, HIGHER) == pytest.approx(1.2)
    assert oriented_ratio(100.0, 80.0, HIGHER) == pytest.approx(0.8)
    # latency: head 50 us against base 100 us is twice as good
    assert oriented_ratio(100.0, 50.0, LOWER) == pytest.approx(2.0)
    assert oriented_ratio(100.0, 125.0, LOWER) == pytest.approx(0.8)


def test_ratio_edge_cases() -> None:
    assert oriented_ratio(0.0, 0.0, LOWER) == 1.0
    assert oriented_ratio(0.0, 3.0, LOWER) == 0.0  # a crash where there was none: flagged
    assert oriented_ratio(3.0, 0.0, LOWER) == math.inf
    assert oriented_ratio(1.0, 2.0, 0) is None
    assert oriented_ratio(math.nan, 2.0, HIGHER) is None
    assert oriented_ratio(-35.7, 12.0, LOWER) is None


def test_rows_take_the_median_per_side_and_pool_groups() -> None:
    base = [
        [_r("rate", 100.0), _r("p50", 10.0, "µs", "≤ 20 µs")],
        [_r("rate", 300.0)],  # another group's file: no p50 in it
        [_r("rate", 200.0), _r("p50", 30.0, "µs", "≤ 20 µs"), _r("gone", 1.0)],
    ]
    head = [
        [_r("rate", 150.0), _r("p50", 25.0, "µs", "≤ 20 µs"), _r("new", 5.0)],
        [_r("rate", 90.0), _r("p50", 25.0, "µs", "≤ 20 µs")],
        [_r("rate", 170.0), _r("p50", math.nan, "µs", "≤ 20 µs")],
    ]
    by_name = {row.question: row for row in rows(base, head)}
    rate = by_name["rate"]
    assert (rate.base, rate.head, rate.base_runs, rate.head_runs) == (200.0, 150.0, 3, 3)
    assert rate.ratio == pytest.approx(0.75)
    assert rate.flagged
    p50 = by_name["p50"]  # medians 20 (of 10, 30) and 25 (the NaN left out)
    assert (p50.base, p50.head) == (20.0, 25.0)
    assert p50.ratio == pytest.approx(0.8)
    assert by_name["new"].base is None and by_name["new"].ratio is None
    assert by_name["gone"].head is None
    assert [row.question for row in rows(base, head)] == ["rate", "p50", "new", "gone"]


def test_format_rows_marks_flagged_and_one_sided_questions() -> None:
    text = format_rows(rows([[_r("a", 100.0), _r("b", 1.0)]], [[_r("a", 50.0), _r("c", 2.0)]]))
    lines = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert "0.5x  << 0.9" in lines["a"]
    assert "only base" in lines["b"]
    assert "only head" in lines["c"]
