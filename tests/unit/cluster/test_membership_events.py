"""The public membership view: SWIM events in operator words, and a bounded drop-oldest
stream that never blocks its publisher (autojump clock, no sockets)."""

from __future__ import annotations

import trio
import trio.testing

from jarvis_trio.cluster.tracker import MembershipTracker
from jarvis_trio.peers.directory import PeerInfo
from jarvis_trio.peers.membership import ClusterEvent, EventHub, MemberInfo
from jarvis_trio.swim import EventKind, Member, MembershipEvent, MemberState, NodeMeta

META = NodeMeta("127.0.0.1", 7000, 8000)


def ev(
    kind: EventKind | None, state: MemberState, inc: int = 1, name: str = "b"
) -> MembershipEvent:
    return MembershipEvent(kind, Member(name, inc, state, META))


def test_swim_events_map_to_operator_kinds_and_remember_since() -> None:
    now = [100.0]
    tracker = MembershipTracker("a", clock=lambda: now[0])
    sequence = [
        (EventKind.JOIN, MemberState.ALIVE, "joined"),
        (EventKind.METADATA, MemberState.ALIVE, "updated"),
        (EventKind.SUSPECT, MemberState.SUSPECT, "suspect"),
        (EventKind.ALIVE, MemberState.ALIVE, "updated"),
        (EventKind.DEAD, MemberState.DEAD, "failed"),
        (EventKind.JOIN, MemberState.ALIVE, "rejoined"),
        (EventKind.LEFT, MemberState.LEFT, "left"),
        (EventKind.JOIN, MemberState.ALIVE, "rejoined"),
    ]
    for step, (kind, state, expected) in enumerate(sequence):
        now[0] = 100.0 + step
        assert tracker.observe(ev(kind, state, inc=step)) == expected
    info = tracker.info(Member("b", 7, MemberState.ALIVE, META), agents=3)
    assert info == MemberInfo("b", "127.0.0.1:7000", 8000, "alive", 7, 3, 107.0, False)
    # metadata changes keep "since" (the state did not change)
    now[0] = 500.0
    tracker.observe(ev(EventKind.METADATA, MemberState.ALIVE, inc=9))
    assert tracker.info(Member("b", 9, MemberState.ALIVE, META), 0).since == 107.0
    # this node and resync markers are not public events
    assert tracker.observe(ev(EventKind.JOIN, MemberState.ALIVE, name="a")) is None
    assert tracker.observe(ev(None, MemberState.ALIVE)) is None


def test_resync_explains_what_a_lagging_watcher_missed() -> None:
    tracker = MembershipTracker("a")
    tracker.observe(ev(EventKind.JOIN, MemberState.ALIVE, name="b"))
    tracker.observe(ev(EventKind.JOIN, MemberState.ALIVE, name="c"))
    view = [
        Member("a", 1, MemberState.ALIVE, META),
        Member("b", 2, MemberState.DEAD, META),
        Member("c", 1, MemberState.ALIVE, META),
        Member("d", 1, MemberState.ALIVE, META),
    ]
    missed = tracker.resync(view)
    assert [(e.kind, e.member.name) for e in missed] == [
        (EventKind.DEAD, "b"),
        (EventKind.JOIN, "d"),
    ]
    assert [tracker.observe(e) for e in missed] == ["failed", "joined"]


async def test_a_slow_consumer_loses_the_oldest_and_never_blocks_the_publisher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = EventHub()
    tracker = MembershipTracker("a")
    total, maxlen = 1000, 16
    received: list[ClusterEvent] = []
    async with trio.open_nursery() as nursery, hub.open(maxlen=maxlen) as events:
        consumed = trio.Event()

        async def slow_consumer() -> None:
            async for event in events:
                received.append(event)
                await trio.sleep(1.0)  # much slower than the protocol
                if len(received) == maxlen + 1:
                    consumed.set()
                    return

        nursery.start_soon(slow_consumer)
        await trio.testing.wait_all_tasks_blocked()  # the consumer is parked, empty-handed
        started = trio.current_time()
        for inc in range(total):  # the "protocol": publishes without ever waiting
            swim_event = ev(
                EventKind.JOIN if inc == 0 else EventKind.METADATA, MemberState.ALIVE, inc
            )
            kind = tracker.observe(swim_event)
            assert kind is not None
            hub.publish(ClusterEvent(kind, 0.0, tracker.info(swim_event.member, 0)))
            assert len(events._buffer) <= maxlen
        assert trio.current_time() == started  # no virtual time passed: nothing waited
        assert events.lost == total - maxlen
        assert hub.lost == total - maxlen
        await consumed.wait()
    first, *rest = received
    assert first.kind == "lost" and first.lost == total - maxlen
    assert first.as_dict()["lost"] == total - maxlen
    # then the newest `maxlen` events, in order
    assert [e.member.incarnation for e in rest if e.member] == list(range(total - maxlen, total))


async def test_streams_filter_agent_events_and_end_when_the_hub_closes() -> None:
    hub = EventHub()
    plain = hub.open()
    with_agents = hub.open(agents=True)
    info = PeerInfo("echo-1", "echo", node_id="b", location="remote")
    hub.publish(ClusterEvent("agent_added", 1.0, agent=info))
    hub.publish(ClusterEvent("agent_removed", 2.0, agent=info, reason="failed"))
    hub.close()
    assert [e async for e in plain] == []
    got = [e.as_dict() async for e in with_agents]
    assert got[1] == {
        "event": "agent_removed",
        "time": 2.0,
        "agent": info.as_dict(),
        "reason": "failed",
    }
    late = hub.open()
    assert [e async for e in late] == []
