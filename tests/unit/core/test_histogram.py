"""The batched histogram counts exactly what a bisect per value would, holds at most one
batch, and reads complete whenever it is read."""

from __future__ import annotations

import random
from bisect import bisect_left

import pytest

from jarvis_trio._histogram import FOLD_EVERY, Histogram

BOUNDS = (0.001, 0.01, 0.1, 1.0)


def test_buckets_sum_and_count_match_one_bisect_per_value() -> None:
    rng = random.Random(5)
    values = [rng.choice((0.001, 0.01, 0.1, 1.0, 2.0)) for _ in range(300)]
    values += [rng.uniform(-0.01, 3.0) for _ in range(3 * FOLD_EVERY)]
    histogram = Histogram(BOUNDS)
    expected = [0] * (len(BOUNDS) + 1)
    for value in values:
        histogram.observe(value)
        expected[bisect_left(BOUNDS, max(value, 0.0))] += 1
        assert len(histogram.pending) < FOLD_EVERY  # bounded between reads
    assert histogram.buckets == expected
    assert histogram.count == len(values)
    assert histogram.sum == pytest.approx(sum(max(v, 0.0) for v in values))
    histogram.observe(0.05)  # a read after more values sees them at once
    assert histogram.as_dict() == {
        "bounds": list(BOUNDS),
        "buckets": [expected[0], expected[1], expected[2] + 1, *expected[3:]],
        "count": len(values) + 1,
        "sum": pytest.approx(sum(max(v, 0.0) for v in values) + 0.05),
    }


def test_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram((0.1, 0.01))
    with pytest.raises(ValueError):
        Histogram(())
