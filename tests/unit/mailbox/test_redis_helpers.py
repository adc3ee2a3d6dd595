"""Pure helpers of the Redis access layer: backoff and URL redaction."""

from __future__ import annotations

import random

import pytest

from jarvis_trio._redis import Backoff, parse_redis_url, redact_url
from jarvis_trio.mailbox._stream import agent_of, stream_key


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


def test_cluster_and_sentinel_urls_are_parsed() -> None:
    cluster = parse_redis_url("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001")
    assert cluster.kind == "cluster"
    assert cluster.nodes == (("10.0.0.1", 7000), ("::1", 7001))
    assert (cluster.username, cluster.password, cluster.tls) == ("u", "p@ss", False)
    sentinel = parse_redis_url("rediss+sentinel://s1:26379,s2:26379/mymaster/2")
    assert (sentinel.kind, sentinel.service, sentinel.db, sentinel.tls) == (
        "sentinel",
        "mymaster",
        2,
        True,
    )
    assert parse_redis_url("redis://h:6379/0").kind == "single"
    assert redact_url("redis+cluster://u:secret@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://", "names no host:port"),
        ("redis+cluster://a:1,b", "'b' is not host:port"),
        ("redis+cluster://a:1/3", "only database 0"),
        ("redis+sentinel://a:1", "names no service"),
        ("redis+sentinel://a:1/svc/x", "not a number"),
    ],
)
def test_bad_cluster_and_sentinel_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_redis_url(url)


def test_agent_keys_carry_one_hash_tag_each() -> None:
    assert stream_key("scout-1a2b3c4d") == "jarvis:mbox:{scout-1a2b3c4d}"
    odd = "a}b{c%"
    assert stream_key(odd) == "jarvis:mbox:{a%7Db%7Bc%25}"
    assert agent_of(stream_key(odd)) == odd
    assert stream_key("a}") != stream_key("a%7D")  # escaping keeps ids apart
