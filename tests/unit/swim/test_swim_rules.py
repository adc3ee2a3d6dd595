"""Table tests of the pure parts: merge rules, Lifeguard formulas, the piggyback queue."""

from __future__ import annotations

import math

import pytest

from jarvis_trio.swim.broadcasts import BroadcastQueue, retransmit_limit
from jarvis_trio.swim.lifeguard import (
    Health,
    expected_confirmations,
    suspicion_bounds,
    suspicion_timeout,
)
from jarvis_trio.swim.members import (
    MemberState,
    NodeMeta,
    Verdict,
    judge_alive,
    judge_dead,
    judge_suspect,
)

A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
IGN, APP, CONF, REF = Verdict.IGNORE, Verdict.APPLY, Verdict.CONFIRM, Verdict.REFUTE


@pytest.mark.parametrize(
    ("known", "known_inc", "inc", "is_self", "same_meta", "verdict"),
    [
        (None, 0, 0, False, True, APP),  # unknown member joins
        (A, 3, 3, False, True, IGN),  # same incarnation: nothing new
        (A, 3, 2, False, False, IGN),  # older: stale, even with other metadata
        (A, 3, 4, False, True, APP),  # newer incarnation wins
        (S, 3, 3, False, True, IGN),  # alive(i) does not clear suspect(i)
        (S, 3, 4, False, True, APP),  # alive(i+1) refutes suspect(i)
        (D, 3, 3, False, True, IGN),  # the dead stay dead at the same incarnation
        (D, 3, 4, False, True, APP),  # ...but come back with a higher one
        (L, 3, 4, False, True, APP),
        (A, 3, 3, True, True, IGN),  # our own record echoed back
        (A, 3, 2, True, False, IGN),  # an old record of ours
        (A, 3, 3, True, False, REF),  # same incarnation, other metadata: someone is wrong
        (A, 3, 5, True, True, REF),  # a higher incarnation than ours (previous life)
    ],
)
def test_alive_rule(
    known: MemberState | None,
    known_inc: int,
    inc: int,
    is_self: bool,
    same_meta: bool,
    verdict: Verdict,
) -> None:
    assert judge_alive(known, known_inc, inc, is_self=is_self, same_meta=same_meta) is verdict


@pytest.mark.parametrize(
    ("known", "known_inc", "inc", "is_self", "verdict"),
    [
        (None, 0, 5, False, IGN),  # suspicion of a stranger means nothing
        (A, 3, 2, False, IGN),  # stale
        (A, 3, 3, False, APP),  # suspect(i) overrides alive(i)
        (A, 3, 4, False, APP),
        (S, 3, 3, False, CONF),  # another accuser of the same incarnation
        (S, 3, 4, False, APP),  # a newer suspicion replaces the old one
        (D, 3, 4, False, IGN),  # the dead are not suspected
        (L, 3, 4, False, IGN),
        (A, 3, 3, True, REF),  # suspected ourselves: refute
        (A, 3, 2, True, IGN),  # an old suspicion we already refuted
    ],
)
def test_suspect_rule(
    known: MemberState | None, known_inc: int, inc: int, is_self: bool, verdict: Verdict
) -> None:
    assert judge_suspect(known, known_inc, inc, is_self=is_self) is verdict


@pytest.mark.parametrize(
    ("known", "known_inc", "inc", "is_self", "leaving", "verdict"),
    [
        (None, 0, 1, False, False, IGN),
        (A, 3, 2, False, False, IGN),
        (A, 3, 3, False, False, APP),
        (S, 3, 3, False, False, APP),
        (S, 3, 9, False, False, APP),
        (D, 3, 3, False, False, IGN),  # already dead: do not re-gossip forever
        (L, 3, 4, False, False, IGN),
        (A, 3, 3, True, False, REF),  # declared dead while alive: refute
        (A, 3, 3, True, True, IGN),  # ...unless we are leaving anyway
    ],
)
def test_dead_rule(
    known: MemberState | None,
    known_inc: int,
    inc: int,
    is_self: bool,
    leaving: bool,
    verdict: Verdict,
) -> None:
    assert judge_dead(known, known_inc, inc, is_self=is_self, leaving=leaving) is verdict


@pytest.mark.parametrize(
    ("n", "period", "low"),
    [(1, 1.0, 4.0), (10, 1.0, 4.0), (100, 1.0, 8.0), (1000, 1.0, 12.0), (1000, 0.5, 6.0)],
)
def test_suspicion_bounds_follow_memberlist(n: int, period: float, low: float) -> None:
    lo, hi = suspicion_bounds(4, 6, n, period)
    assert lo == pytest.approx(low)
    assert hi == pytest.approx(6 * low)


@pytest.mark.parametrize(
    ("confirmations", "expected", "timeout"),
    [
        (0, 2, 60.0),  # no confirmation: the maximum
        (1, 2, 60.0 - 50.0 * math.log(2) / math.log(3)),
        (2, 2, 10.0),  # all expected confirmations: the minimum
        (5, 2, 10.0),  # never below the minimum
        (0, 0, 10.0),  # nobody can confirm: the minimum at once
    ],
)
def test_suspicion_timeout_shrinks_logarithmically(
    confirmations: int, expected: int, timeout: float
) -> None:
    assert suspicion_timeout(10.0, 60.0, confirmations, expected) == pytest.approx(timeout)


@pytest.mark.parametrize(("mult", "n", "k"), [(4, 100, 2), (4, 4, 2), (4, 3, 0), (6, 10, 4)])
def test_expected_confirmations(mult: int, n: int, k: int) -> None:
    assert expected_confirmations(mult, n) == k


def test_health_is_clamped_and_scales_timeouts() -> None:
    health = Health(8)
    assert health.scale(0.5) == 0.5
    health.apply(-1)
    assert health.score == 0
    for _ in range(20):
        health.apply(1)
    assert health.score == 8
    assert health.scale(1.0) == 9.0
    health.apply(-3)
    assert health.score == 5
    assert health.scale(0.5) == 3.0


@pytest.mark.parametrize(("n", "limit"), [(1, 4), (9, 4), (10, 8), (99, 8), (1024, 16)])
def test_retransmit_limit(n: int, limit: int) -> None:
    assert retransmit_limit(4, n) == limit


def test_queue_sends_newest_and_least_sent_first() -> None:
    queue = BroadcastQueue()
    queue.push("a", b"A" * 10)
    queue.push("b", b"B" * 10)
    out: list[bytes] = []
    queue.fill(10, 5, out)
    assert out == [b"B" * 10]  # newest first
    out.clear()
    queue.fill(10, 5, out)
    assert out == [b"A" * 10]  # then the one sent least
    queue.push("c", b"C" * 10)
    out.clear()
    queue.fill(30, 5, out)
    assert out == [b"C" * 10, b"B" * 10, b"A" * 10]


def test_queue_respects_the_retransmit_limit() -> None:
    queue = BroadcastQueue()
    queue.push("a", b"A" * 10)
    sent = 0
    for _ in range(10):
        out: list[bytes] = []
        queue.fill(100, 3, out)
        sent += len(out)
    assert sent == 3
    assert len(queue) == 0 and "a" not in queue


def test_queue_replaces_older_news_about_the_same_member() -> None:
    queue = BroadcastQueue()
    queue.push("a", b"old-alive")
    queue.push("a", b"new-suspect")
    out: list[bytes] = []
    queue.fill(100, 3, out)
    assert out == [b"new-suspect"]
    assert len(queue) == 1


def test_queue_fills_around_updates_that_do_not_fit() -> None:
    queue = BroadcastQueue()
    queue.push("small", b"s" * 8)
    queue.push("big", b"b" * 50)
    out: list[bytes] = []
    used = queue.fill(20, 3, out)
    assert out == [b"s" * 8] and used == 8
    assert queue.transmits("big") == 0 and queue.transmits("small") == 1


def test_queue_is_bounded_dropping_the_most_sent() -> None:
    queue = BroadcastQueue(max_entries=3)
    queue.push("a", b"a" * 8)
    out: list[bytes] = []
    queue.fill(100, 10, out)  # "a" has been sent once
    queue.push("b", b"b" * 8)
    queue.push("c", b"c" * 8)
    queue.push("d", b"d" * 8)
    assert len(queue) == 3 and "a" not in queue


def test_node_meta_validates() -> None:
    assert NodeMeta("::1", 7946).address == ("::1", 7946)
    with pytest.raises(ValueError):
        NodeMeta("localhost", 7946)
    with pytest.raises(ValueError):
        NodeMeta("127.0.0.1", 70000)
    with pytest.raises(ValueError):
        NodeMeta("127.0.0.1", 1, public_key=b"x" * 256)
