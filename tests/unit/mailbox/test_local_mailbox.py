"""The in-process mailbox: FIFO, ack/nack, release, bounds, waiting without polling."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from mailbox_waits import received_after

from jarvis_trio.config import MeshConfig
from jarvis_trio.errors import MailboxError, MailboxFull, PayloadError, PayloadTooLarge
from jarvis_trio.mailbox import InProcessHub, MailboxSettings, open_mailbox_hub
from jarvis_trio.services import Mailbox, MailboxHub


def make_config(**values: object) -> MeshConfig:
    return MeshConfig.load(dict(values), environ={}, env_file=None)


@pytest.fixture
async def hub() -> AsyncIterator[InProcessHub]:
    settings = MailboxSettings(queue_size=5, max_mailboxes=4, max_unacked=3)
    async with open_mailbox_hub(
        make_config(max_message_size=256), "n1", settings=settings
    ) as opened:
        assert isinstance(opened, InProcessHub)
        yield opened


async def test_default_hub_is_in_process_and_follows_the_protocols() -> None:
    async with open_mailbox_hub(make_config(), "n1") as opened:
        assert opened.kind == "in-process"
        assert isinstance(opened, MailboxHub)
        mailbox = opened.mailbox_for("a")
        assert isinstance(mailbox, Mailbox)
        assert mailbox.agent_id == "a"
        assert opened.mailbox_for("a") is mailbox


async def test_fifo_round_trip_with_sender_and_ids(hub: InProcessHub) -> None:
    alice, bob = hub.mailbox_for("alice"), hub.mailbox_for("bob")
    ids = [alice.send("bob", {"n": n}) for n in range(3)]
    assert len(set(ids)) == 3
    assert all(i.startswith("msg-") for i in ids)
    got = [await bob.receive(timeout=0) for _ in range(3)]
    assert [m.payload["n"] for m in got if m] == [0, 1, 2]
    assert [m.message_id for m in got if m] == ids
    first = got[0]
    assert first is not None
    assert (first.sender, first.target, first.delivery_count) == ("alice", "bob", 1)


async def test_receive_times_out_and_zero_does_not_wait(
    hub: InProcessHub, autojump_clock: trio.testing.MockClock
) -> None:
    bob = hub.mailbox_for("bob")
    start = trio.current_time()
    assert await bob.receive(timeout=0) is None
    assert trio.current_time() == start
    assert await bob.receive(timeout=7.5) is None
    assert trio.current_time() - start == pytest.approx(7.5)


async def test_waiting_receive_wakes_on_send(
    hub: InProcessHub, autojump_clock: trio.testing.MockClock
) -> None:
    alice, bob = hub.mailbox_for("alice"), hub.mailbox_for("bob")
    received = []

    async def reader() -> None:
        received.append(await bob.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(3)  # virtual time: the reader has waited 3 s with nothing to read
        assert received == []
        alice.send("bob", {"late": True})
    assert received[0] is not None and received[0].payload == {"late": True}


async def test_ack_removes_and_a_second_ack_is_an_error(hub: InProcessHub) -> None:
    hub.mailbox_for("alice").send("bob", {"x": 1})
    bob = hub.mailbox_for("bob")
    message = await bob.receive(timeout=0)
    assert message is not None
    await bob.ack(message)
    assert await bob.receive(timeout=0) is None
    with pytest.raises(MailboxError, match="not claimed"):
        await bob.ack(message)


async def test_nack_redelivers_first_with_a_higher_count(hub: InProcessHub) -> None:
    alice, bob = hub.mailbox_for("alice"), hub.mailbox_for("bob")
    alice.send("bob", {"n": 1})
    alice.send("bob", {"n": 2})
    first = await bob.receive(timeout=0)
    assert first is not None
    first.payload["n"] = "changed by the handler"  # type: ignore[index]
    await bob.nack(first)
    again = await bob.receive(timeout=0)
    assert again is not None
    assert (again.message_id, again.delivery_count) == (first.message_id, 2)
    assert again.payload == {"n": 1}  # a private copy, as on first delivery
    await bob.ack(again)
    with pytest.raises(MailboxError, match="not claimed"):
        await bob.nack(first)  # acknowledged: nothing left to give back


async def test_release_gives_unacknowledged_messages_to_the_next_mailbox(
    hub: InProcessHub,
) -> None:
    alice = hub.mailbox_for("alice")
    for n in range(3):
        alice.send("bob", {"n": n})
    old = hub.mailbox_for("bob")
    claimed = await old.read(2)
    await old.ack(claimed[0])
    hub.release("bob")
    with pytest.raises(MailboxError, match="released"):
        await old.receive(timeout=0)
    new = hub.mailbox_for("bob")
    assert new is not old
    got = await new.read(10)
    assert [(m.payload["n"], m.delivery_count) for m in got] == [(1, 2), (2, 1)]


async def test_messages_wait_for_an_agent_that_has_not_joined(hub: InProcessHub) -> None:
    hub.mailbox_for("alice").send("later", {"hello": "you"})
    message = await hub.mailbox_for("later").receive(timeout=0)
    assert message is not None and message.payload == {"hello": "you"}


async def test_full_queue_refuses_the_message(hub: InProcessHub) -> None:
    alice = hub.mailbox_for("alice")
    for n in range(5):
        alice.send("bob", {"n": n})
    with pytest.raises(MailboxFull, match="queue_size=5"):
        alice.send("bob", {"n": 5})
    bob = hub.mailbox_for("bob")
    message = await bob.receive(timeout=0)
    assert message is not None
    alice.send("bob", {"n": 5})  # room again
    await bob.nack(message)  # given back in front even though the queue is full again
    assert [m.payload["n"] for m in await bob.read(3)] == [0, 1, 2]


async def test_table_of_queues_is_bounded(hub: InProcessHub) -> None:
    sender = hub.mailbox_for("s")
    for target in ("t1", "t2", "t3"):
        sender.send(target, {})
    with pytest.raises(MailboxFull, match="max_mailboxes"):
        sender.send("t4", {})


async def test_unacknowledged_claims_are_bounded(hub: InProcessHub) -> None:
    alice, bob = hub.mailbox_for("alice"), hub.mailbox_for("bob")
    for n in range(5):
        alice.send("bob", {"n": n})
    assert len(await bob.read(10)) == 3  # max_unacked
    with pytest.raises(MailboxError, match="max_unacked=3"):
        await bob.receive(timeout=0)


async def test_read_and_peek(hub: InProcessHub) -> None:
    alice, bob = hub.mailbox_for("alice"), hub.mailbox_for("bob")
    assert await bob.peek() is None
    assert await bob.read() == []
    alice.send("bob", {"n": 0})
    alice.send("bob", {"n": 1})
    peeked = await bob.peek()
    assert peeked is not None and peeked.payload == {"n": 0}
    assert [m.payload for m in await bob.read(1)] == [{"n": 0}]
    peeked = await bob.peek()
    assert peeked is not None and peeked.payload == {"n": 1}
    with pytest.raises(ValueError, match="positive whole number"):
        await bob.read(0)


async def test_each_delivery_is_a_private_copy(hub: InProcessHub) -> None:
    payload = {"list": [1]}
    hub.mailbox_for("alice").send("bob", payload)
    payload["list"].append(2)
    bob = hub.mailbox_for("bob")
    message = await bob.receive(timeout=0)
    assert message is not None and message.payload == {"list": [1]}


async def test_bad_sends_fail_at_the_call(hub: InProcessHub) -> None:
    alice = hub.mailbox_for("alice")
    with pytest.raises(PayloadError, match=r"\$\.when"):
        alice.send("bob", {"when": {1, 2}})
    with pytest.raises(PayloadTooLarge):
        alice.send("bob", {"x": "y" * 300})
    with pytest.raises(ValueError, match="target_id"):
        alice.send("", {})
    assert await hub.mailbox_for("bob").receive(timeout=0) is None


async def test_send_from_another_thread_wakes_the_receiver() -> None:
    async with open_mailbox_hub(make_config(), "n1") as opened:
        alice, bob = opened.mailbox_for("alice"), opened.mailbox_for("bob")
        message = await received_after(
            bob, lambda: trio.to_thread.run_sync(alice.send, "bob", {"from": "thread"})
        )
        assert message is not None and message.payload == {"from": "thread"}


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"MailboxSettings\.queue_size=0"):
        MailboxSettings(queue_size=0)


async def test_a_closed_hub_refuses_sends() -> None:
    async with open_mailbox_hub(make_config(), "n1") as opened:
        alice = opened.mailbox_for("alice")
    with pytest.raises(MailboxError, match="closed"):
        alice.send("bob", {})


async def test_a_failed_message_comes_back_after_its_backoff_then_is_dead_lettered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = MailboxSettings(max_deliveries=3, retry_base=1.0, retry_max=1.5)
    async with open_mailbox_hub(make_config(), "n1", settings=settings) as opened:
        assert isinstance(opened, InProcessHub)
        alice, bob = opened.mailbox_for("alice"), opened.mailbox_for("bob")
        message_id = alice.send("bob", {"n": 1})
        alice.send("bob", {"n": 2})
        first = await bob.receive(timeout=0)
        assert first is not None and first.delivery_count == 1
        start = trio.current_time()
        assert not await bob.fail(first, ValueError("bad"))
        # the next message is not held up by the retry
        other = await bob.receive(timeout=0)
        assert other is not None and other.payload == {"n": 2}
        await bob.ack(other)
        again = await bob.receive()
        assert again is not None and again.message_id == message_id
        assert again.delivery_count == 2 and trio.current_time() - start == 1.0
        assert not await bob.fail(again, "still bad")
        third = await bob.receive()
        assert third is not None and third.delivery_count == 3
        assert trio.current_time() - start == 2.5  # 1.0, then 2.0 capped at retry_max
        assert await bob.fail(third, KeyError("gone"))
        assert await bob.receive(timeout=10) is None
        (letter,) = await bob.dead_letters()
        assert (letter.message_id, letter.deliveries) == (message_id, 3)
        assert (letter.error, letter.error_type) == ("'gone'", "KeyError")
        assert letter.payload == {"n": 1} and letter.sender == "alice"


async def test_a_release_gives_back_messages_waiting_for_a_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = MailboxSettings(max_deliveries=5, retry_base=60.0)
    async with open_mailbox_hub(make_config(), "n1", settings=settings) as opened:
        assert isinstance(opened, InProcessHub)
        opened.mailbox_for("alice").send("bob", {"n": 1})
        bob = opened.mailbox_for("bob")
        first = await bob.receive(timeout=0)
        assert first is not None
        await bob.fail(first, "later")
        opened.release("bob")  # the agent stopped during the backoff: nothing is lost
        back = await opened.mailbox_for("bob").receive(timeout=0)
        assert back is not None and back.message_id == first.message_id
