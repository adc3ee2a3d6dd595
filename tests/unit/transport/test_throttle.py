"""ThrottledLog: the first record of a kind, then at most one per interval with a count."""

from __future__ import annotations

import logging

import pytest

from jarvis_trio._throttle import ThrottledLog


def test_one_record_per_interval_per_key_with_the_count_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttled = ThrottledLog(logging.getLogger("t"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        assert throttled("bad", "bad frame %d", 1)
        for n in range(2, 50):
            assert not throttled("bad", "bad frame %d", n)
        assert throttled("other", "another kind")  # keys are independent
        now[0] += 10.0
        assert throttled("bad", "bad frame %d", 50)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "bad frame 1",
        "another kind",
        "bad frame 50 (48 more like it since the last report)",
    ]
