"""Pure helpers of the Redis access layer: backoff and URL redaction."""

from __future__ import annotations

import random

import pytest

from jarvis_trio._redis import Backoff, redact_url


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    seed = 1234
    backoff = Backoff(initial=0.05, cap=2.0, rng=random.Random(seed))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(2.0, 0.05 * 2**n) for n in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling, f"seed={seed}: {delays}"
    backoff.reset()
    assert backoff.next_delay() <= 0.05


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:secret@db.local:6380/1", "redis://:***@db.local:6380/1"),
        ("rediss://user:pw@db.local/2", "rediss://user:***@db.local/2"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
