"""The Redis mailbox against a real redis-server: across nodes, at-least-once, bounds."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import redis
import trio
import trio.testing
from mailbox_waits import received_after

from jarvis_trio.config import MeshConfig
from jarvis_trio.errors import MailboxError, MailboxFull, PayloadError
from jarvis_trio.mailbox import MailboxSettings, RedisHub, open_mailbox_hub
from jarvis_trio.mailbox.redis_backed import stream_key
from jarvis_trio.services import Mailbox, MailboxHub, MailboxMessage
from jarvis_trio.testing.ports import free_port
from jarvis_trio.testing.redis_server import RedisServer

from .conftest import unique

pytestmark = pytest.mark.redis


def make_config(url: str, **values: object) -> MeshConfig:
    return MeshConfig.load({"redis_url": url, **values}, environ={}, env_file=None)


async def receive(mailbox: Mailbox, timeout: float = 10.0) -> MailboxMessage:
    message = await mailbox.receive(timeout=timeout)
    assert message is not None, f"nothing arrived for {mailbox.agent_id} within {timeout} s"
    return message


def blocked_readers(url: str) -> set[str]:
    """Ids of the Redis clients blocked in XREADGROUP right now."""
    client = redis.Redis.from_url(url)
    try:
        return {
            str(c["id"])
            for c in client.client_list()
            if c["cmd"] == "xreadgroup" and "b" in c["flags"]
        }
    finally:
        client.close()


async def wait_for_readers(url: str, condition: Callable[[set[str]], bool]) -> set[str]:
    """Wait (bounded by the caller's fail_after) until the blocked readers Redis reports
    satisfy ``condition``: proof that a read really waits inside the server, or is gone."""
    # Redis has no notification for "a client is blocked": look again every 10 ms.
    while not condition(readers := await trio.to_thread.run_sync(blocked_readers, url)):  # noqa: ASYNC110
        await trio.sleep(0.01)
    return readers


async def test_round_trip_between_two_nodes_keeps_fifo(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    alice_id, bob_id = unique("alice"), unique("bob")
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
    ):
        assert (hub_a.kind, hub_b.kind) == ("redis", "redis")
        alice, bob = hub_a.mailbox_for(alice_id), hub_b.mailbox_for(bob_id)
        assert isinstance(bob, Mailbox)
        sent = [alice.send(bob_id, {"n": n, "text": "héllo"}) for n in range(200)]
        got: list[MailboxMessage] = []
        with trio.fail_after(10):
            while len(got) < 200:
                message = await receive(bob)
                got.append(message)
                await bob.ack(message)
        assert [m.message_id for m in got] == sent
        assert [m.payload["n"] for m in got] == list(range(200))
        assert {(m.sender, m.target, m.delivery_count) for m in got} == {(alice_id, bob_id, 1)}
        reply_id = bob.send(alice_id, {"re": sent[0]})
        reply = await receive(alice)
        assert (reply.message_id, reply.sender, reply.payload) == (
            reply_id,
            bob_id,
            {"re": sent[0]},
        )
        await alice.ack(reply)


async def test_blocking_receive_wakes_when_a_message_arrives(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    async with (
        open_mailbox_hub(config, "node-a") as hub_a,
        open_mailbox_hub(config, "node-b") as hub_b,
    ):
        alice = hub_a.mailbox_for("alice")

        async def send() -> None:
            alice.send(bob_id, {"wake": "up"})

        message = await received_after(hub_b.mailbox_for(bob_id), send)
        assert message is not None and message.payload == {"wake": "up"}


async def test_receive_times_out_with_none(redis_server: RedisServer) -> None:
    async with open_mailbox_hub(make_config(redis_server.url), "node-a") as hub:
        bob = hub.mailbox_for(unique("bob"))
        with trio.fail_after(5):
            assert await bob.receive(timeout=0) is None
            assert await bob.receive(timeout=0.2) is None


async def test_messages_wait_for_an_agent_that_has_not_joined(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    late_id = unique("late")
    async with open_mailbox_hub(config, "node-a") as hub_a:
        hub_a.mailbox_for("alice").send(late_id, {"first": 1})
        hub_a.mailbox_for("alice").send(late_id, {"second": 2})
    async with open_mailbox_hub(config, "node-b") as hub_b:
        late = hub_b.mailbox_for(late_id)
        assert [m.payload for m in await late.read(10)] == [{"first": 1}, {"second": 2}]


async def test_reader_that_crashes_before_ack_gets_the_message_again(
    redis_server: RedisServer,
) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    async with open_mailbox_hub(config, "sender") as sender:
        sender.mailbox_for("alice").send(bob_id, {"important": True})
        with trio.CancelScope() as crash:
            async with open_mailbox_hub(config, "reader-1") as first:
                claimed = await receive(first.mailbox_for(bob_id))
                assert claimed.delivery_count == 1
                crash.cancel()  # dies holding the message, without ack
                await trio.sleep_forever()
        async with open_mailbox_hub(config, "reader-2") as second:
            bob = second.mailbox_for(bob_id)
            again = await receive(bob)
            assert (again.message_id, again.payload, again.delivery_count) == (
                claimed.message_id,
                {"important": True},
                2,
            )
            await bob.ack(again)
        async with open_mailbox_hub(config, "reader-3") as third:
            assert await third.mailbox_for(bob_id).receive(timeout=0.2) is None
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.xlen(stream_key(bob_id)) == 0  # acknowledged messages are deleted
    finally:
        client.close()


async def test_reader_cancelled_while_blocked_leaves_nothing_behind(
    redis_server: RedisServer,
) -> None:
    """A cancelled blocking read must not stay blocked in Redis, where it would claim the
    next message for a reader that is gone."""
    config = make_config(redis_server.url)
    settings = MailboxSettings(max_block=30.0)
    bob_id = unique("bob")
    before = await trio.to_thread.run_sync(blocked_readers, redis_server.url)
    async with open_mailbox_hub(config, "sender") as sender:
        with trio.fail_after(10):  # far less than the 30 s a surviving read would block
            with trio.CancelScope() as crash:
                async with (
                    open_mailbox_hub(config, "reader-1", settings=settings) as first,
                    trio.open_nursery() as nursery,
                ):
                    nursery.start_soon(first.mailbox_for(bob_id).receive)
                    zombie = await wait_for_readers(redis_server.url, lambda r: r > before)
                    crash.cancel()
            async with open_mailbox_hub(config, "reader-2", settings=settings) as second:
                bob = second.mailbox_for(bob_id)
                received: list[MailboxMessage | None] = []

                async def reader() -> None:
                    received.append(await bob.receive())

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    await wait_for_readers(
                        redis_server.url, lambda r: not r & zombie and len(r - before) == 1
                    )
                    sender.mailbox_for("alice").send(bob_id, {"n": 1})
        message = received[0]
        assert message is not None
        assert (message.payload, message.delivery_count) == ({"n": 1}, 1)


async def test_cancelled_receive_then_receive_again_in_the_same_mailbox(
    redis_server: RedisServer,
) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    async with open_mailbox_hub(config, "node") as hub:
        bob = hub.mailbox_for(bob_id)
        with trio.move_on_after(0.1):
            await bob.receive()
        hub.mailbox_for("alice").send(bob_id, {"after": "cancel"})
        with trio.fail_after(10):
            message = await receive(bob)
        assert message.payload == {"after": "cancel"}


async def test_nack_redelivers_first(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    async with open_mailbox_hub(config, "node") as hub:
        alice, bob = hub.mailbox_for("alice"), hub.mailbox_for(bob_id)
        alice.send(bob_id, {"n": 1})
        alice.send(bob_id, {"n": 2})
        first = await receive(bob)
        first.payload["n"] = "changed by the handler"  # type: ignore[index]
        await bob.nack(first)
        again = await receive(bob)
        assert (again.message_id, again.delivery_count) == (first.message_id, 2)
        assert again.payload == {"n": 1}  # a private copy, as on first delivery
        await bob.ack(again)
        with pytest.raises(MailboxError, match="not claimed"):
            await bob.ack(again)
        assert (await receive(bob)).payload == {"n": 2}


async def test_release_then_new_mailbox_reclaims(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    async with open_mailbox_hub(config, "node") as hub:
        hub.mailbox_for("alice").send(bob_id, {"n": 1})
        old = hub.mailbox_for(bob_id)
        claimed = await receive(old)
        hub.release(bob_id)
        with pytest.raises(MailboxError, match="released"):
            await old.receive(timeout=0)
        again = await receive(hub.mailbox_for(bob_id))
        assert (again.message_id, again.delivery_count) == (claimed.message_id, 2)


async def test_peek_and_read(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    async with open_mailbox_hub(config, "node") as hub:
        alice, bob = hub.mailbox_for("alice"), hub.mailbox_for(bob_id)
        assert await bob.peek() is None
        for n in range(4):
            alice.send(bob_id, {"n": n})
        await hub.drain()
        peeked = await bob.peek()
        assert peeked is not None and peeked.payload == {"n": 0}
        assert [m.payload["n"] for m in await bob.read(2)] == [0, 1]
        peeked = await bob.peek()
        assert peeked is not None and peeked.payload == {"n": 2}
        assert [m.payload["n"] for m in await bob.read(10)] == [2, 3]
        assert await bob.peek() is None


async def test_full_outbox_refuses_the_message(redis_server: RedisServer) -> None:
    settings = MailboxSettings(outbox_size=3)
    bob_id = unique("bob")
    async with open_mailbox_hub(make_config(redis_server.url), "node", settings=settings) as hub:
        assert isinstance(hub, RedisHub)
        alice = hub.mailbox_for("alice")
        for n in range(3):  # no checkpoint in between: the writer cannot run
            alice.send(bob_id, {"n": n})
        with pytest.raises(MailboxFull, match="outbox_size=3"):
            alice.send(bob_id, {"n": 3})
        await hub.drain()
        alice.send(bob_id, {"n": 3})
        await hub.drain()
        got = await hub.mailbox_for(bob_id).read(10)
        assert [m.payload["n"] for m in got] == [0, 1, 2, 3]


async def test_retention_keeps_the_newest_queue_size_messages(redis_server: RedisServer) -> None:
    settings = MailboxSettings(queue_size=5)
    late_id = unique("late")
    async with open_mailbox_hub(make_config(redis_server.url), "node", settings=settings) as hub:
        assert isinstance(hub, RedisHub)
        for n in range(20):
            hub.mailbox_for("alice").send(late_id, {"n": n})
        await hub.drain()
        got = await hub.mailbox_for(late_id).read(100)
        assert [m.payload["n"] for m in got] == [15, 16, 17, 18, 19]
    client = redis.Redis.from_url(redis_server.url)
    try:
        ttl = client.pttl(stream_key(late_id))
        assert 0 < ttl <= round(settings.idle_ttl * 1000)
    finally:
        client.close()


async def test_bad_payload_is_refused_at_the_call(redis_server: RedisServer) -> None:
    async with open_mailbox_hub(make_config(redis_server.url, max_message_size=64), "n") as hub:
        alice = hub.mailbox_for("alice")
        with pytest.raises(PayloadError, match=r"\$\.items\[1\]"):
            alice.send("bob", {"items": [1, {2}]})
        with pytest.raises(ValueError, match="64 bytes"):
            alice.send("bob", {"x": "y" * 100})


async def test_unreachable_redis_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING, logger="jarvis_trio"):
        async with open_mailbox_hub(make_config(url), "node") as hub:
            assert hub.kind == "in-process"
            mailbox = hub.mailbox_for("a")
            mailbox.send("a", {"still": "works"})
            message = await mailbox.receive(timeout=0)
            assert message is not None and message.payload == {"still": "works"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert url in warnings[0].getMessage()
    assert "in-process" in warnings[0].getMessage()


async def test_redis_restart_mid_stream_loses_nothing(
    redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Persistence on; Redis stops while messages flow and comes back on the same port."""
    server = redis_server_factory(persistent=True)
    config = make_config(server.url)
    settings = MailboxSettings(max_block=0.5)
    received: list[str] = []
    half = trio.Event()
    sent: list[str] = []
    caplog.set_level(logging.WARNING, logger="jarvis_trio")
    async with (
        open_mailbox_hub(config, "node-a", settings=settings) as hub_a,
        open_mailbox_hub(config, "node-b", settings=settings) as hub_b,
    ):
        assert isinstance(hub_a, RedisHub)
        alice, bob = hub_a.mailbox_for("alice"), hub_b.mailbox_for("bob")

        async def reader() -> None:
            while len(set(received)) < 300:
                message = await bob.receive()
                assert message is not None
                received.append(message.message_id)
                await bob.ack(message)
                if len(received) >= 50:
                    half.set()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                sent.extend(alice.send("bob", {"i": i}) for i in range(100))
                await half.wait()
                await trio.to_thread.run_sync(server.stop)
                sent.extend(alice.send("bob", {"i": i}) for i in range(100, 200))
                assert hub_a.pending_writes > 0
                await trio.to_thread.run_sync(server.start)
                sent.extend(alice.send("bob", {"i": i}) for i in range(200, 300))
            await hub_a.drain()
            assert hub_a.pending_writes == 0
    assert set(received) == set(sent)
    first_seen = list(dict.fromkeys(received))
    assert first_seen == sent  # per-agent FIFO survives the restart
    writer_log = [r.getMessage() for r in caplog.records if r.name == "jarvis_trio.mailbox"]
    assert any("lost" in m and "reconnecting with backoff" in m for m in writer_log), writer_log
    assert any("is back" in m for m in writer_log), writer_log


async def test_two_processes_exchange_messages(redis_server: RedisServer) -> None:
    bob_id = unique("bob")
    script = textwrap.dedent(
        f"""
        import trio
        from jarvis_trio.config import MeshConfig
        from jarvis_trio.mailbox import open_mailbox_hub

        async def main():
            config = MeshConfig.load({{"redis_url": {redis_server.url!r}}}, environ={{}},
                                     env_file=None)
            async with open_mailbox_hub(config, "other-process") as hub:
                sender = hub.mailbox_for("proc-sender")
                for n in range(50):
                    sender.send({bob_id!r}, {{"n": n}})
                reply = await hub.mailbox_for("proc-sender").receive(timeout=10)
                assert reply is not None and reply.payload == {{"thanks": 50}}, reply
                await hub.mailbox_for("proc-sender").ack(reply)

        trio.run(main)
        """
    )
    async with open_mailbox_hub(make_config(redis_server.url), "this-process") as hub:
        bob = hub.mailbox_for(bob_id)
        async with trio.open_nursery() as nursery:
            process: list[subprocess.CompletedProcess[bytes]] = []

            async def run_child() -> None:
                process.append(
                    await trio.run_process(
                        [sys.executable, "-c", script], capture_stderr=True, check=False
                    )
                )

            nursery.start_soon(run_child)
            with trio.fail_after(20):
                got = []
                while len(got) < 50:
                    message = await receive(bob, timeout=15)
                    got.append(message.payload["n"])
                    await bob.ack(message)
                assert got == list(range(50))
                bob.send("proc-sender", {"thanks": 50})
        assert process[0].returncode == 0, process[0].stderr.decode()


async def test_cancelled_hub_still_writes_what_it_accepted(redis_server: RedisServer) -> None:
    config = make_config(redis_server.url)
    bob_id = unique("bob")
    with trio.CancelScope() as crash:
        async with open_mailbox_hub(config, "sender") as sender:
            sent = [sender.mailbox_for("alice").send(bob_id, {"n": n}) for n in range(100)]
            crash.cancel()  # the writer never ran; closing writes the outbox anyway
            await trio.sleep_forever()
        assert sender.pending_writes == 0  # type: ignore[union-attr]
    with pytest.raises(MailboxError, match="closed"):
        sender.mailbox_for("alice").send(bob_id, {"late": True})
    async with open_mailbox_hub(config, "reader") as reader:
        got = await reader.mailbox_for(bob_id).read(200)
    assert [m.message_id for m in got] == sent


async def test_closing_while_redis_is_down_reports_the_loss(
    redis_server_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory()
    settings = MailboxSettings(close_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="jarvis_trio"):
        async with open_mailbox_hub(make_config(server.url), "node", settings=settings) as hub:
            await trio.to_thread.run_sync(server.stop)
            for n in range(7):
                hub.mailbox_for("alice").send("bob", {"n": n})
            started = trio.current_time()
        assert trio.current_time() - started < 5  # bounded by close_timeout, not stuck
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "7 messages not written" in errors[0], errors


async def test_mailbox_survives_redis_losing_its_data(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()  # no persistence: a restart loses streams and groups
    config = make_config(server.url)
    settings = MailboxSettings(max_block=0.2)
    async with open_mailbox_hub(config, "node", settings=settings) as hub:
        alice, bob = hub.mailbox_for("alice"), hub.mailbox_for("bob")
        alice.send("bob", {"n": 1})
        await bob.ack(await receive(bob))
        await trio.to_thread.run_sync(server.restart)
        alice.send("bob", {"n": 2})
        with trio.fail_after(15):
            message = await receive(bob, timeout=15)
        assert message.payload == {"n": 2}
        await bob.ack(message)


async def test_messages_redis_confirmed_survive_a_redis_crash(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """appendfsync always: what Redis confirmed is on disk, even after SIGKILL."""
    server = redis_server_factory(persistent=True)
    config = make_config(server.url)
    async with open_mailbox_hub(config, "sender") as hub:
        assert isinstance(hub, RedisHub)
        sent = [hub.mailbox_for("alice").send("bob", {"n": n}) for n in range(50)]
        await hub.drain()
        assert hub.written == 50
    await trio.to_thread.run_sync(server.kill)
    await trio.to_thread.run_sync(server.start)
    async with open_mailbox_hub(config, "reader") as hub:
        got = await hub.mailbox_for("bob").read(100)
    assert [m.message_id for m in got] == sent


async def test_hub_serves_a_bounded_number_of_mailboxes(redis_server: RedisServer) -> None:
    settings = MailboxSettings(max_mailboxes=2)
    async with open_mailbox_hub(make_config(redis_server.url), "n", settings=settings) as hub:
        assert isinstance(hub, MailboxHub)
        hub.mailbox_for("a")
        hub.mailbox_for("b")
        assert hub.mailbox_for("a") is hub.mailbox_for("a")
        with pytest.raises(MailboxFull, match="max_mailboxes"):
            hub.mailbox_for("c")
        hub.release("b")
        hub.mailbox_for("c")
