"""The bell a group of test servers waits on: rung by every line a server logs and by its exit."""

from __future__ import annotations

import threading

import pytest

from jarvis_trio.testing.redis_server import LogBell, RedisServer


def test_wait_past_returns_on_a_ring_and_false_without_one() -> None:
    bell = LogBell()
    assert bell.wait_past(0, 0.01) is False
    ringer = threading.Thread(target=bell.ring)
    ringer.start()
    assert bell.wait_past(0, 10.0) is True
    ringer.join()
    assert bell.rung == 1
    assert bell.wait_past(0, 0.0) is True  # a ring already past the mark counts
    assert bell.wait_past(1, -1.0) is False  # a spent deadline does not wait


@pytest.mark.redis
def test_a_server_rings_for_its_log_lines_and_for_its_exit() -> None:
    from tests.conftest import _require_redis_server

    _require_redis_server()
    bell = LogBell()
    with RedisServer(bell=bell) as server:
        assert bell.rung >= 1  # the start-up lines, "Ready to accept connections" among them
        rung = bell.rung
        server.kill()
        assert bell.wait_past(rung, 10.0)  # the end of its output rings too
