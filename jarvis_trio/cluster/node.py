"""One node's cross-node layer: membership drives connections, directories and failures.

:class:`ClusterNode` is the core's :class:`~jarvis_trio.peers.router.RemoteRoute`. It runs
three kinds of tasks in its own nursery:

* the *membership watcher* turns SWIM events into data connections (and, with CURVE, the
  set of keys ZAP admits), starts a directory sync per live node, and on *dead*/*left* drops
  the node's agents from the directory and fails every request waiting on it at once;
* one *directory sync* per live node fetches the node's agent list over the data channel
  whenever the version in its membership record moves past the one fetched (retrying with
  back-off while the node does not answer);
* the *inbound pump* takes frames from the bridge in batches: agent messages go to their
  agent (responses straight to the pending table), directory requests are answered. It is
  total: a message nested deeper than a local send allows, one whose ``sender`` is an agent
  of another node (a member speaks for its own agents only), or one whose handling fails in
  any way is dropped, counted (``inbound_*``) and logged at most once per interval;
* the *joiner* (only when there are seeds to join) makes :attr:`ClusterNode.joined` true once
  a seed answered the join and the agent directory of every live member that answer named
  has arrived; :meth:`ClusterNode.join` waits for it at start, bounded by ``join_timeout``.

Joined is the node's readiness: its agents can reach every agent of the cluster as the seed
described it. A lone node (no seeds, or only itself) is joined from the start.

Inbound backpressure: a message for an agent whose inbox is full makes the pump wait (at
most ``send_timeout``, then the message is dropped and counted) instead of dropping at once,
so a slow agent slows its senders down -- through the bridge's bounded inbox, ZeroMQ's
high-water marks and the senders' credits -- rather than losing their notifications. While
the pump waits, later frames wait behind it: arrival order is kept.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import trio
from trio_util import AsyncValue

from .._sides import trio_side
from .._throttle import ThrottledLog
from ..errors import JoinError, NodeNameConflict, PayloadTooLarge, PeerUnavailable, TransportError
from ..payload import MAX_DEPTH, too_deep
from ..peers.directory import PeerInfo
from ..peers.inbox import AgentInbox
from ..peers.membership import ClusterEvent, EventHub, MemberInfo
from ..peers.messages import RESPONSE, IncomingMessage
from ..peers.router import Router
from ..swim import EventKind, Member, MembershipEvent, MemberState, Subscription, SwimNode
from ..transport import Bridge, Envelope, Kind, encode_envelope
from .tracker import MembershipTracker
from .wire import (
    DirectoryError,
    directory_payload,
    is_newer,
    published_version,
    read_directory,
    to_envelope,
    to_message,
)

__all__ = ["ClusterNode"]

log = logging.getLogger("jarvis_trio.cluster")

_LIVE = (MemberState.ALIVE, MemberState.SUSPECT)


class _Fetch:
    __slots__ = ("done", "node", "result")

    def __init__(self, node: str) -> None:
        self.node = node
        self.done = trio.Event()
        self.result: tuple[int, list[PeerInfo]] | None = None


class _Remote:
    """What this node tracks about one live peer node."""

    __slots__ = ("fetched", "member", "scope", "wanted")

    def __init__(self, member: Member) -> None:
        self.member = member
        self.wanted: AsyncValue[int] = AsyncValue(member.meta.directory_version)
        self.fetched: int | None = None
        self.scope = trio.CancelScope()


class ClusterNode:
    """The cross-node layer of one node (see the module doc).

    It routes through the node's ``router`` (its directory, its inbound delivery) and calls
    ``on_node_failed(node_id)`` when membership declares a node dead or gone, after dropping
    that node's agents; the callback returns how many waiting requests it failed (logged).
    """

    def __init__(
        self,
        router: Router,
        on_node_failed: Callable[[str], int],
        bridge: Bridge,
        swim: SwimNode,
        *,
        epoch: int,
        send_timeout: float,
        fetch_timeout: float,
        retry_min: float = 0.05,
        retry_max: float = 2.0,
        events: EventHub | None = None,
        seeds: Sequence[str] = (),
    ) -> None:
        self.router = router
        self._on_node_failed = on_node_failed
        self.bridge = bridge
        self.swim = swim
        self.epoch = epoch
        self.send_timeout = send_timeout
        self.fetch_timeout = fetch_timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._curve = bridge.public_key is not None
        self._remotes: dict[str, _Remote] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._fetch_ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self.changes: AsyncValue[int] = AsyncValue(0)
        self.seeds = list(seeds)  # as configured, for messages
        self._joined = trio.Event()
        self._settled = trio.Event()  # joined, or a name conflict ended the attempt
        self._join_returned = False  # start is over: conflicts are logged, not raised
        self._expected: set[str] = set()  # members the join's answer named
        # no data connection is opened before this node's name is known to be its own: the
        # data channel names a connection after its node, so an impostor would take over the
        # real holder's connections at every member it reached
        self._name_cleared = False
        self._left = False
        self.events = events if events is not None else EventHub()
        self.tracker = MembershipTracker(swim.name)
        self._throttled = ThrottledLog(log)
        self._counters: dict[str, int] = {
            "inbound_malformed": 0,
            "inbound_too_deep": 0,
            "inbound_spoofed_sender": 0,
            "inbound_errors": 0,
            "inbound_waited": 0,
            "inbound_dropped_full": 0,
            "send_timeouts": 0,
            "directory_fetches": 0,
            "directory_fetch_failures": 0,
            "directory_refused": 0,
            "directory_unsolicited": 0,
            "directory_unanswered": 0,
            "name_conflicts": 0,
        }

    # -- RemoteRoute ------------------------------------------------------------------------
    def node_alive(self, node_id: str) -> bool:
        """True while membership holds ``node_id`` alive or suspect."""
        return node_id in self._remotes

    async def send(self, node_id: str, message: IncomingMessage) -> bool:
        """Hand ``message`` to the data channel for ``node_id``.

        ``False`` when the node is not live, or has no credit left for ``send_timeout``
        seconds (a backed-up peer); raises ``PayloadTooLarge`` over the frame limit.
        """
        if node_id in self._remotes:
            bridge = self.bridge
            frame = encode_envelope(to_envelope(message), bridge.settings.max_frame)
            try:
                if bridge.send_nowait(node_id, frame):  # the common case: credit available
                    await trio.lowlevel.checkpoint_if_cancelled()
                    return True
                with trio.move_on_after(self.send_timeout):
                    await bridge.send(node_id, frame)
                    return True
                self._counters["send_timeouts"] += 1
                return False
            except PeerUnavailable:  # alive, but its data channel is not connected
                pass
        await trio.lowlevel.checkpoint()
        return False

    # -- views ------------------------------------------------------------------------------
    def live_nodes(self) -> list[str]:
        """Names of the other nodes currently alive or suspect."""
        return list(self._remotes)

    @property
    def joined(self) -> bool:
        """True once a seed answered the join and the agent directories of the live members
        it named have arrived (at once without seeds): the node is part of a cluster whose
        agents it can reach, not alone with its seeds unanswered."""
        return self._joined.is_set()

    async def wait_joined(self) -> None:
        """Return once :attr:`joined` (bound the wait with ``trio.fail_after``)."""
        await self._joined.wait()

    def members(self) -> list[MemberInfo]:
        """The SWIM view as public records, this node first."""
        directory = self.router.directory
        tracker = self.tracker
        records = [
            tracker.info(
                member,
                len(directory.local_agents())
                if member.name == tracker.local
                else directory.remote_count(member.name),
            )
            for member in self.swim.members()
        ]
        records.sort(key=lambda info: (not info.local, info.name))
        return records

    @trio_side
    async def leave(self) -> None:
        """Leave the cluster gracefully (idempotent): peers drop this node's agents and fail
        the requests they wait on at once, instead of waiting to detect a failure; here every
        other node is dropped the same way. Bounded by the SWIM node's ``leave_timeout``.
        """
        if self._left:
            await trio.lowlevel.checkpoint()
            return
        self._left = True
        if self.swim.protocol.name_conflict is not None and not self.joined:
            # a goodbye in a name another live node holds would make the cluster drop *it*
            self.swim.close()
            await trio.lowlevel.checkpoint()
        else:
            await self.swim.leave()
        for name in list(self._remotes):  # we are out: nobody is reachable any more
            self._down(name, "left")

    @trio_side
    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the set of live nodes
        or a remote directory changes (bound the wait with ``trio.fail_after``)."""
        await self.changes.wait_value(lambda _: predicate())

    def stats(self) -> dict[str, int]:
        """This layer's counters merged with the bridge's (``bridge_`` prefix)."""
        merged = dict(self._counters)
        merged.update({f"bridge_{k}": v for k, v in self.bridge.stats().items()})
        merged["live_nodes"] = len(self._remotes)
        merged.update({f"membership_{k}": v for k, v in self.tracker.counts.items()})
        merged["joined"] = int(self.joined)
        return merged

    # -- joining ----------------------------------------------------------------------------
    async def join(self, timeout: float, *, required: bool) -> None:
        """Wait until :attr:`joined`, at most ``timeout`` seconds; the start of a node.

        Raises :class:`NodeNameConflict` when a live member at another address holds this
        node's name (whatever ``required`` says). When no seed answered in time, raises
        :class:`JoinError` if ``required``, else logs one WARNING naming the seeds and what
        failed and returns: the node runs alone and keeps trying (it logs when it joins).
        When a seed answered but some directories did not arrive, logs a WARNING naming
        the members and returns.
        """
        with trio.move_on_after(timeout):
            await self._settled.wait()
        proto = self.swim.protocol
        name = self.swim.name
        if proto.name_conflict is not None:
            host, port = proto.name_conflict
            raise NodeNameConflict(name, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self._join_returned = True
        if self.joined:
            return
        if not proto.joined:
            what = (
                f"no answer from seed(s) {', '.join(self.seeds)} within {timeout:g} s "
                f"({proto.stats['join_requests']} join request(s) sent"
            )
            if self.swim.last_send_error:
                what += f"; sending failed: {self.swim.last_send_error}"
            what += ")"
            if required:
                raise JoinError(f"node {name} could not join the cluster: {what}; join_required")
            log.warning(
                "node %s could not join the cluster: %s; it runs alone and keeps trying",
                name,
                what,
                extra={"node": name},
            )
            return
        missing = self._missing_directories()
        log.warning(
            "node %s joined the cluster, but within %g s %s; it runs on and catches up",
            name,
            timeout,
            f"the agent directories of {', '.join(sorted(missing))} did not arrive"
            if missing
            else "the check of another record of its name did not end",
            extra={"node": name},
        )

    def _missing_directories(self) -> set[str]:
        """Members the join's answer named whose agent directory has not arrived yet (a
        member that went away since is no longer waited for)."""
        state_of = self.swim.protocol.state_of
        return {
            name
            for name in self._expected
            if state_of(name) in _LIVE
            and ((remote := self._remotes.get(name)) is None or remote.fetched is None)
        }

    async def _joining(self) -> None:
        proto = self.swim.protocol
        began = trio.current_time()
        await self.swim.wait_until(
            lambda: proto.name_conflict is not None or (proto.joined and not proto.checking_name)
        )
        if proto.name_conflict is None:
            self._name_cleared = True
            self._reconcile(self.swim.members())
            me = self.swim.name
            self._expected = {
                m.name
                for m in self.swim.alive_members()
                if m.state is MemberState.ALIVE and m.name != me and m.meta.data_port
            }
            await self.changes.wait_value(
                lambda _: proto.name_conflict is not None or not self._missing_directories()
            )
        if proto.name_conflict is None:
            self._joined.set()
            self.changes.value += 1
            log.info(
                "node %s joined the cluster in %.3f s: %d member(s) known, %d remote agent(s)",
                self.swim.name,
                trio.current_time() - began,
                len(self._remotes),
                sum(1 for info in self.router.directory.matching() if info.location == "remote"),
                extra={"node": self.swim.name},
            )
        self._settled.set()

    # -- running ----------------------------------------------------------------------------
    async def run(
        self,
        subscription: Subscription,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled: membership watcher, inbound pump, version publisher."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch, subscription)
            nursery.start_soon(self._pump)
            nursery.start_soon(self._publish_versions)
            if self.swim.protocol.joined and not self.swim.protocol.live_names():
                self._name_cleared = True
                self._joined.set()  # nothing to join: a lone node is ready at once
                self._settled.set()
            else:
                nursery.start_soon(self._joining)
            task_status.started()

    async def _publish_versions(self) -> None:
        async for version in self.router.directory.version.eventual_values():
            if self._left:
                return
            await self.swim.update_metadata(
                directory_version=published_version(self.epoch, version)
            )

    # -- membership -------------------------------------------------------------------------
    async def _watch(self, subscription: Subscription) -> None:
        async for event in subscription:
            if event.kind is None:  # we fell behind: re-read the whole view
                members = self.swim.members()
                for missed in self.tracker.resync(members):
                    self._publish(missed)
                self._reconcile(members)
            elif event.kind is EventKind.CONFLICT:
                self._name_conflict(event.member)
            else:
                self._publish(event)
                self._apply(event.member)

    def _name_conflict(self, claimant: Member) -> None:
        self._counters["name_conflicts"] += 1
        self.changes.value += 1  # wakes the joiner, which gives up
        if not self._join_returned:
            return  # join() raises NodeNameConflict, which says it all
        host, port = claimant.address
        log.warning(
            "node name %s is also used by a live node at %s: one of the two must be renamed "
            "(a node of this version refuses to start under a name in use)",
            claimant.name,
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            extra={"node": self.swim.name},
        )

    def _publish(self, event: MembershipEvent) -> None:
        """Hand the public form of a SWIM event to the event hub (which never blocks)."""
        kind = self.tracker.observe(event)
        if kind is None:
            return
        member = event.member
        info = self.tracker.info(member, self.router.directory.remote_count(member.name))
        self.events.publish(ClusterEvent(kind, time.time(), info))
        log.info(
            "member %s %s (incarnation %d)",
            member.name,
            kind,
            member.incarnation,
            extra={"node": self.swim.name, "member": member.name},
        )

    def _reconcile(self, members: Iterable[Member]) -> None:
        seen = set()
        for member in members:
            seen.add(member.name)
            self._apply(member)
        for name in [n for n in self._remotes if n not in seen]:
            self._down(name, "failed")

    def _apply(self, member: Member) -> None:
        if member.name == self.swim.name:
            return
        if not self._name_cleared:
            return  # the joiner reconciles the whole view once the name is cleared
        if member.state in _LIVE:
            self._up(member)
        else:
            self._down(member.name, "left" if member.state is MemberState.LEFT else "failed")

    def _up(self, member: Member) -> None:
        name, meta = member.name, member.meta
        remote = self._remotes.get(name)
        keys_changed = remote is None or remote.member.meta.public_key != meta.public_key
        if meta.data_port:
            try:
                self.bridge.connect(name, meta.host, meta.data_port, meta.public_key or None)
            except (ValueError, TransportError) as exc:
                log.warning("cannot connect to node %s: %s", name, exc)
                return
        if remote is None:
            remote = self._remotes[name] = _Remote(member)
            if self._nursery is not None and meta.data_port:
                self._nursery.start_soon(self._sync, remote)
            self.changes.value += 1
        else:
            remote.member = member
            remote.wanted.value = meta.directory_version
        if self._curve and keys_changed:
            self._update_keys()

    def _down(self, name: str, reason: str) -> None:
        remote = self._remotes.pop(name, None)
        if remote is None:
            return
        remote.scope.cancel()
        self.router.directory.drop_node(name, reason)
        failed = self._on_node_failed(name)
        self.bridge.disconnect(name)
        for fetch in self._fetches.values():
            if fetch.node == name:
                fetch.done.set()
        if self._curve:
            self._update_keys()
        self.changes.value += 1
        log.info("node %s is gone: its agents were dropped, %d requests failed", name, failed)

    def _update_keys(self) -> None:
        self.bridge.set_members(
            {
                r.member.meta.public_key: name
                for name, r in self._remotes.items()
                if r.member.meta.public_key
            }
        )

    # -- directories ------------------------------------------------------------------------
    async def _sync(self, remote: _Remote) -> None:
        name = remote.member.name
        delay = self.retry_min
        with remote.scope:
            while True:
                await remote.wanted.wait_value(lambda v: is_newer(v, remote.fetched))
                if await self._fetch(name, remote):
                    delay = self.retry_min
                    continue
                self._counters["directory_fetch_failures"] += 1
                if self.bridge.is_connected(name):
                    # with CURVE the node may have refused us before it knew our key
                    self.bridge.reset(name)
                await trio.sleep(delay)  # back off before asking a silent node again
                delay = min(delay * 2, self.retry_max)

    async def _fetch(self, name: str, remote: _Remote) -> bool:
        fetch_id = f"dir-{next(self._fetch_ids)}"
        fetch = self._fetches[fetch_id] = _Fetch(name)
        self._counters["directory_fetches"] += 1
        try:
            with trio.move_on_after(self.fetch_timeout):
                envelope = Envelope(Kind.DIRECTORY_GET, "", "", fetch_id, time.time(), None, {})
                try:
                    await self.bridge.send_envelope(name, envelope)
                except PeerUnavailable:
                    return False
                await fetch.done.wait()
            if fetch.result is None or name not in self._remotes:
                return False
            version, agents = fetch.result
            self.router.directory.set_remote_agents(name, agents)
            remote.fetched = version
            self.changes.value += 1
            return True
        finally:
            del self._fetches[fetch_id]

    def _answer_directory(self, node: str, request: Envelope) -> None:
        directory = self.router.directory
        payload = directory_payload(
            published_version(self.epoch, directory.version.value), directory.local_agents()
        )
        reply = Envelope(Kind.DIRECTORY, "", "", request.correlation_id, time.time(), None, payload)
        too_large: PayloadTooLarge | None = None
        try:
            frame = encode_envelope(reply, self.bridge.settings.max_frame)
            if self.bridge.send_nowait(node, frame):
                return
        except PayloadTooLarge as exc:
            too_large = exc
        except PeerUnavailable:
            pass  # the asker is not (yet) a member we know: it will ask again
        self._counters["directory_unanswered"] += 1
        if too_large is not None:
            log.error("the agent directory does not fit in one message: %s", too_large)

    def _take_directory(self, node: str, reply: Envelope) -> None:
        fetch = self._fetches.get(reply.correlation_id or "")
        if fetch is None or fetch.node != node:
            self._counters["directory_unsolicited"] += 1
            return
        try:
            fetch.result = read_directory(reply.data)
        except DirectoryError as exc:
            self._counters["directory_refused"] += 1
            log.warning("refused the agent directory of node %s: %s", node, exc)
        fetch.done.set()

    # -- inbound ----------------------------------------------------------------------------
    async def _pump(self) -> None:
        """Take the bridge's batches and dispatch every message of one without a coroutine
        or a task switch of its own; only a message for a full inbox makes it wait."""
        receive = self.bridge.receive_sized
        while True:
            batch = await receive()
            if not batch:
                return
            for node, envelope, brackets in batch:
                try:
                    held = self._inbound(node, envelope, brackets)
                    if held is not None:
                        await self._wait_for_room(*held)
                except Exception as exc:  # total: no frame may stop the node
                    self._counters["inbound_errors"] += 1
                    self._throttled(
                        "inbound_error",
                        "dropped a frame from node %s that could not be handled: %r",
                        node,
                        exc,
                    )

    def _refuse(self, reason: str, node: str, envelope: Envelope) -> None:
        self._counters[f"inbound_{reason}"] += 1
        self._throttled(
            reason,
            "dropped a %s message from node %s (sender %.64r, correlation %.64r): %s",
            envelope.kind.name,
            node,
            envelope.sender,
            envelope.correlation_id,
            reason,
        )

    def _sender_of_other_node(self, node: str, sender: str) -> bool:
        """True when ``sender`` is an agent this node knows to live on a node other than
        ``node``, the transport-authenticated origin: a member may speak for its own agents
        only."""
        found = self.router.directory.get(sender)
        return found is not None and found[0].node_id != node

    def _inbound(
        self, node: str, envelope: Envelope, brackets: int = MAX_DEPTH + 1
    ) -> tuple[AgentInbox, IncomingMessage] | None:
        """Handle one envelope from ``node``; returns the inbox and message when the inbox is
        full and the pump must wait for room. ``brackets`` bounds the frame's nesting (see
        :meth:`~jarvis_trio.transport.Bridge.receive_sized`): at most ``MAX_DEPTH`` of them
        and neither payload can nest too deep, so neither is walked."""
        kind = envelope.kind
        if kind is Kind.DIRECTORY_GET:
            self._answer_directory(node, envelope)
            return None
        if kind is Kind.DIRECTORY:
            self._take_directory(node, envelope)
            return None
        message = to_message(node, envelope)
        if message is None:
            self._refuse("malformed", node, envelope)
            return None
        if brackets > MAX_DEPTH and (too_deep(message.data) or too_deep(message.context)):
            self._refuse("too_deep", node, envelope)
            return None
        if self._sender_of_other_node(node, message.sender):
            self._refuse("spoofed_sender", node, envelope)
            return None
        router = self.router
        inbox = None
        if message.type != RESPONSE and router.accepting:
            inbox = router.directory.local_route(message.target)
        if inbox is None:
            router.deliver_inbound(message)  # a response, or counted as dropped
            return None
        if inbox.put_nowait(message):
            return None
        if inbox.closed:
            router.deliver_inbound(message)  # counted as dropped
            return None
        return inbox, message

    async def _wait_for_room(self, inbox: AgentInbox, message: IncomingMessage) -> None:
        """A full inbox: wait for the agent (keeping arrival order), within send_timeout."""
        if await inbox.put(message, trio.current_time() + self.send_timeout):
            self._counters["inbound_waited"] += 1
        else:
            self._counters["inbound_dropped_full"] += 1
