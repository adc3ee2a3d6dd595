"""The pending-request table: resolution, late replies, deadlines, reaping, bounds."""

from __future__ import annotations

import random
import secrets

import pytest
import trio
import trio.testing

from jarvis_trio.peers.messages import RESPONSE, IncomingMessage
from jarvis_trio.peers.pending import TICK, PendingTable
from jarvis_trio.peers.router import Router, _after_fork


def reply(correlation_id: str, value: int = 1) -> IncomingMessage:
    return IncomingMessage("b", "n1", RESPONSE, {"v": value}, correlation_id)


async def test_request_entry_wakes_its_waiter_and_is_removed() -> None:
    table = PendingTable()
    entry = table.open_request("req-1", "n1", trio.current_time() + 10)
    assert entry is not None
    got: list[IncomingMessage | None] = []
    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            got.append(await table.wait("req-1", entry))

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert table.resolve(reply("req-1"))
    assert got[0] is not None and got[0].data == {"v": 1}
    assert "req-1" not in table
    assert not table.resolve(reply("req-1"))
    assert table.late_replies == 1


async def test_request_deadline_ends_the_wait_with_none(autojump_clock: trio.abc.Clock) -> None:
    table = PendingTable()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(table.reap_forever)
        start = trio.current_time()
        entry = table.open_request("req-2", "n1", start + 2.0)
        assert entry is not None
        assert await table.wait("req-2", entry) is None
        elapsed = trio.current_time() - start
        assert 2.0 <= elapsed <= 2.0 + TICK + 1e-9
        assert table.timed_out == 1
        nursery.cancel_scope.cancel()
    assert len(table) == 0


async def test_async_entries_expire_and_leave_a_tombstone(autojump_clock: trio.abc.Clock) -> None:
    table = PendingTable()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(table.reap_forever)
        await trio.testing.wait_all_tasks_blocked()
        assert table.open_async("async-1", "n1", trio.current_time() + 5) is not None
        assert table.open_async("async-2", "n1", trio.current_time() + 1) is not None
        assert table.status("async-1") == "pending"
        start = trio.current_time()
        assert await table.check("async-2", timeout=30, remove=True) is None
        assert trio.current_time() - start < 1.0 + 2 * TICK  # woken by expiry, not timeout
        assert table.status("async-2") == "expired"
        before = trio.current_time()
        assert await table.check("async-2", timeout=30, remove=True) is None
        assert trio.current_time() == before  # expired: answered at once
        table.resolve(reply("async-1", 7))
        assert table.status("async-1") == "ready"
        found = await table.check("async-1", timeout=0, remove=False)
        assert found is not None and found.data == {"v": 7}
        assert table.status("async-1") == "ready"
        found = await table.check("async-1", timeout=0, remove=True)
        assert found is not None
        assert table.status("async-1") == "unknown"
        nursery.cancel_scope.cancel()
    assert table.expired == 1


async def test_check_waits_for_the_reply_event_driven(autojump_clock: trio.abc.Clock) -> None:
    table = PendingTable()
    table.open_async("async-3", "n1", trio.current_time() + 100)
    got: list[IncomingMessage | None] = []
    async with trio.open_nursery() as nursery:

        async def checker() -> None:
            got.append(await table.check("async-3", timeout=50, remove=True))

        nursery.start_soon(checker)
        await trio.sleep(3)  # virtual time: the reply comes 3 s into the check's wait
        table.resolve(reply("async-3"))
    assert got[0] is not None
    assert trio.current_time() == 3


async def test_fail_node_and_close_end_waiters_with_none() -> None:
    table = PendingTable()
    now = trio.current_time()
    a = table.open_request("req-a", "n2", now + 10)
    b = table.open_request("req-b", "n3", now + 10)
    table.open_async("async-c", "n2", now + 10)
    assert a is not None and b is not None
    results: dict[str, IncomingMessage | None] = {}
    async with trio.open_nursery() as nursery:

        async def wait(name: str, entry: object) -> None:
            results[name] = await table.wait(f"req-{name}", entry)  # type: ignore[arg-type]

        nursery.start_soon(wait, "a", a)
        nursery.start_soon(wait, "b", b)
        await trio.testing.wait_all_tasks_blocked()
        assert table.fail_node("n2") == 2
        await trio.testing.wait_all_tasks_blocked()
        assert results == {"a": None}
        assert table.status("async-c") == "ready"
        table.close()
    assert results == {"a": None, "b": None}
    assert table.open_request("req-z", "n1", now + 1) is None


async def test_a_reply_racing_a_cancellation_counts_as_late() -> None:
    table = PendingTable()
    entry = table.open_request("req-c", "n1", trio.current_time() + 10)
    assert entry is not None
    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            await table.wait("req-c", entry)

        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # the waiter is aborted but has not run yet
        assert not table.resolve(reply("req-c"))
    assert table.late_replies == 1
    assert len(table) == 0


def test_the_table_is_bounded() -> None:
    table = PendingTable(limit=2)
    assert table.open_request("r1", "n", 1e9) is not None
    assert table.open_async("r2", "n", 1e9) is not None
    assert table.open_request("r3", "n", 1e9) is None
    assert table.open_async("r4", "n", 1e9) is None
    assert table.refused == 2
    table.discard("r1")
    assert table.open_request("r3", "n", 1e9) is not None


async def test_a_reply_from_another_node_is_refused_and_the_entry_keeps_waiting() -> None:
    table = PendingTable()
    entry = table.open_request("req-9", "n1", trio.current_time() + 10)
    assert entry is not None
    forged = IncomingMessage("b", "n2", RESPONSE, {"v": 666}, "req-9")
    assert not table.resolve(forged)
    assert table.wrong_node_replies == 1 and "req-9" in table and not entry.done
    assert table.resolve(reply("req-9"))
    assert entry.reply is not None and entry.reply.data == {"v": 1}


async def test_the_deadline_wheel_is_bounded_by_pending_requests_not_timeouts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """timeout=3600 at 1,000 req/s, each answered at once: the wheel must not keep one
    bucket per tick for an hour (it used to hold 197 per second of traffic)."""
    table = PendingTable()
    peak = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(table.reap_forever)
        for n in range(20_000):  # 20 s of traffic
            key = f"req-{n}"
            entry = table.open_request(key, "n1", trio.current_time() + 3600)
            assert entry is not None
            if n % 50 == 0:
                await trio.sleep(0.05)  # 1,000 req/s of virtual time
            assert table.resolve(reply(key))
            peak = max(peak, table.timer_buckets)
        nursery.cancel_scope.cancel()
    assert len(table) == 0
    # the newest bucket (kept while empty), one live bucket, its tick, the heap's slack
    assert peak <= 3 + 64
    assert table.timer_buckets <= 64


def test_request_ids_come_from_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    router = Router(
        "n1", max_message_size=1 << 20, notify_timeout=1.0, max_pending=16, rng=random.Random(1)
    )
    drawn: list[int] = []

    def token_hex(nbytes: int) -> str:
        drawn.append(nbytes)
        batch = len(drawn)
        return "".join(f"{batch:x}{n:011x}" for n in range(nbytes * 2 // 12)).ljust(nbytes * 2, "f")

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    # one draw of 2 KiB serves 341 ids; every id takes digits no other id had
    ids = [router.new_id("req-") for _ in range(341)]
    assert ids[0] == "req-100000000000" and ids[340] == "req-100000000154"
    assert drawn == [2048]
    assert router.new_id("async-") == "async-200000000000"  # the next batch
    assert router.random_hex(8) == "30000000"  # the ids took the whole second one
    assert drawn == [2048, 2048, 2048]
    _after_fork()  # a forked child never reuses the parent's batch
    assert router.new_id("req-") == "req-400000000000"
    monkeypatch.undo()
    random.seed(7)
    first = router.new_id("req-")
    random.seed(7)
    assert router.new_id("req-") != first  # not the process PRNG


async def test_deadlines_fire_in_order_whether_queued_or_in_the_wheel(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Long timeouts first go to the arming-order queue, a shorter one after them to the
    wheel; answered entries in the queue are skipped; each waiter wakes at its own deadline
    (the wheel's up to one tick late), never early."""
    table = PendingTable()
    start = trio.current_time()
    timeouts = {"q1": 3.0, "q2": 3.0, "answered": 3.5, "q3": 4.0, "wheel": 1.0, "q4": 5.0}
    woke: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(table.reap_forever)
        entries = {}
        for key, timeout in timeouts.items():
            entry = table.open_request(key, "n1", start + timeout)
            assert entry is not None
            entries[key] = entry

        async def waiter(key: str) -> None:
            assert await table.wait(key, entries[key]) is None
            woke[key] = trio.current_time() - start

        async with trio.open_nursery() as waiters:
            for key in timeouts:
                if key != "answered":
                    waiters.start_soon(waiter, key)
            await trio.testing.wait_all_tasks_blocked()
            assert table.resolve(reply("answered"))
            assert table.timer_buckets == 5 + 2  # five queued (one answered), a bucket, a tick
        nursery.cancel_scope.cancel()
    assert set(woke) == set(timeouts) - {"answered"}
    for key, at in woke.items():
        slack = TICK + 1e-9 if key == "wheel" else 1e-9
        assert timeouts[key] <= at <= timeouts[key] + slack, key
    assert table.timed_out == 5 and len(table) == 0 and table.timer_buckets <= 2


async def test_the_queue_keeps_within_twice_the_live_entries(
    autojump_clock: trio.abc.Clock,
) -> None:
    table = PendingTable()
    start = trio.current_time()
    live = [table.open_request(f"live-{n}", "n1", start + 60) for n in range(10)]
    assert all(live)
    for n in range(1000):  # answered at once, all with the same timeout
        entry = table.open_request(f"req-{n}", "n1", start + 60 + n * 1e-3)
        assert entry is not None
        assert table.resolve(reply(f"req-{n}"))
        assert table.timer_buckets <= 2 * (len(table) + 1) + 48 + 1
    assert len(table) == 10
