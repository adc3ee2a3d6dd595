"""The node runtime: one Trio nursery tree hosting agents, their routing and the services.

Two faces over one core:

* ``async with open_mesh(config) as mesh:`` — structured: the node lives in a nursery of the
  caller; leaving the block stops every agent.
* ``Mesh(config=...)``, ``add()``, ``await start()``, ``await stop()``, ``await
  run_forever()``, ``async with Mesh(...)`` — the documented form. ``start()`` runs the node in
  a Trio *system task* so it may outlive the calling function without leaking anything: the
  task catches every failure (re-raised from ``stop()`` / ``run_forever()``), and it is
  cancelled — agents torn down — when the Trio run ends. ``async with Mesh(...)`` uses a real
  nursery instead.

Shutdown (``stop()``, leaving the block, a fatal crash): the node refuses new sends, every
waiting requester gets ``None`` at once, idle agents end at once, busy handlers get
``config.stop_grace_period`` seconds to finish, then everything left is cancelled. Each
``teardown()`` then runs shielded, bounded by the same grace period. ``stop()`` is
idempotent.

With ``p2p_enabled`` the node enters :func:`jarvis_trio.cluster.open_cluster` for its
lifetime, handing it the node's router (the cluster installs itself as ``router.remote`` and
keeps ``router.directory`` in step with the other nodes) and the callback that fails every
request waiting on a node that died.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import random
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import trio
from trio_util import AsyncValue

from ._logcontext import CURRENT_AGENT, CURRENT_NODE, install_record_factory
from ._roster import AgentRoster
from ._sides import HostSlot, on_trio, trio_side, trio_side_sync
from ._supervision import DEFAULT_RESTART, RestartPolicy, supervise
from .agent import Agent, AgentLogger, has_task_entry
from .compat._asyncio_calls import (
    AsyncioPortal,
    OwnedLoopPortal,
    current_portal,
    release_run_portal,
    use_portal,
)
from .compat._guard import asyncio_guard
from .compat._hosted import start_hosted, stop_hosted
from .config import MeshConfig
from .errors import AgentCrashed, AgentDefinitionError, MeshError
from .mailbox.contracts import MailboxHub
from .peers.client import PeerClient
from .peers.directory import AgentDirectory, PeerInfo
from .peers.inbox import AgentInbox
from .peers.membership import DEFAULT_MAXLEN, ClusterEvent, EventHub, EventStream, MemberInfo
from .peers.pending import DEFAULT_MAX_PENDING
from .peers.router import NodeStats, Router
from .services import NodeServices, open_node_services
from .swim.keyring import Keyring

if TYPE_CHECKING:  # the cross-node layer (and pyzmq) is imported only when p2p is enabled
    from .cluster import ClusterNode

__all__ = ["Mesh", "open_mesh"]

_log = logging.getLogger("jarvis_trio.mesh")
# remote agents appearing or vanishing, waiting for the peer hooks to be called; beyond this
# the oldest are dropped (counted in ``peer_hooks_dropped``): hooks are advisory
MAX_PENDING_PEER_HOOKS = 1024
# agent ids travel in every envelope; bounding them lets the data channel's frame limit be
# the payload limit plus a fixed allowance (see transport.bridge.ENVELOPE_ALLOWANCE)
MAX_AGENT_ID_LENGTH = 256

State = Literal["new", "starting", "running", "stopping", "stopped"]


def _keyring(config: MeshConfig) -> Keyring | None:
    """The node's keyring, holding ``cluster_key`` as its primary, or ``None`` without one."""
    if config.cluster_key is None:
        return None
    return Keyring([config.cluster_key], config.cluster_name)


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The single exception inside (nested) one-member groups, else the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Mesh(AgentRoster):
    """One node: its agents, their routing and its services.

    Usable from Trio directly and from asyncio programs: ``start()``, ``stop()`` and ``async
    with`` awaited outside Trio run the node on the loop's Trio host
    (:mod:`jarvis_trio.compat`), which every object the node builds finds through the node's
    :class:`~jarvis_trio._sides.HostSlot`.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | MeshConfig | None = None,
        *,
        restart_policy: RestartPolicy = DEFAULT_RESTART,
        rng: random.Random | None = None,
        notify_timeout: float = 1.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        env_file: str | None = ".env",
        environ: Mapping[str, str] | None = None,
        mode: str | None = None,
    ) -> None:
        if mode is not None:
            warnings.warn(
                f"Mesh(mode={mode!r}) has no effect: every jarvis_trio mesh is peer to peer "
                "(JarvisCore's autonomous/p2p/distributed modes are one mode here); drop the "
                "argument",
                DeprecationWarning,
                stacklevel=2,
            )
        self.config = (
            config
            if isinstance(config, MeshConfig)
            else MeshConfig.load(config, environ=environ, env_file=env_file)
        )
        if not notify_timeout > 0:
            raise ValueError(f"notify_timeout must be a positive number, got {notify_timeout!r}")
        self.node_id: str = self.config.node_name or "node"
        install_record_factory()
        self.restart_policy = restart_policy
        self._rng = rng if rng is not None else random.Random()
        # handed to every object built for this node; filled when started from asyncio
        self._host_slot = HostSlot()
        self.router = Router(
            self.node_id,
            max_message_size=self.config.max_message_size,
            notify_timeout=notify_timeout,
            max_pending=max_pending,
            rng=self._rng,
        )
        self._agents: dict[str, Agent] = {}
        self._classes: dict[type[Agent], tuple[logging.Logger, bool, tuple[str, ...]]] = {}
        self._unstarted: list[Agent] = []
        self._state: State = "new"
        self._services: NodeServices | None = None
        self._cluster_node: ClusterNode | None = None  # while p2p runs
        self.keyring: Keyring | None = _keyring(self.config)
        """The cluster keys (``None`` without ``cluster_key``): several verify, the primary
        signs; ``install`` / ``use`` / ``remove`` rotate them while the node runs (see
        :class:`~jarvis_trio.swim.Keyring` and the README's security section)."""
        self._agents_nursery: trio.Nursery | None = None
        self._running = AsyncValue(0)
        self._stop_requested = trio.Event()
        self._done = trio.Event()
        self._failure: BaseException | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._started_ok = False
        self._asyncio_portal: AsyncioPortal | None = None  # while running
        self._started_at = time.time()
        self.events = EventHub()
        # remote changes for the peer hooks, numbered: an agent hears those numbered after its
        # setup() finished (_peer_hook_since), preceded by one greeting naming the remote
        # agents known at that moment, so that no agent is announced twice or never
        self._peer_hooks: deque[tuple[int, str, PeerInfo, str | None]] = deque(
            maxlen=MAX_PENDING_PEER_HOOKS
        )
        self._peer_hook_seq = 0
        self._peer_hook_since: dict[str, int] = {}
        self._peer_greetings: deque[tuple[Agent, tuple[PeerInfo, ...]]] = deque()
        self._peer_hooks_wakeup = trio.lowlevel.ParkingLot()
        self.peer_hooks_dropped = 0
        self.router.directory.listener = self._agent_changed
        self.admin_address: tuple[str, int] | None = None  # while the admin endpoint serves

    # -- agents -------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """``new``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        return self._state

    def get_diagnostics(self) -> dict[str, Any]:
        """A snapshot of this node for people and health checks (JSON-compatible).

        ``status`` is ``"stopped"`` unless the mesh runs; then ``"local"`` without P2P,
        ``"isolated"`` when P2P runs but no other node is alive, ``"degraded"`` while some
        member is suspected, and ``"healthy"`` otherwise. ``swim`` carries this node's view of
        the membership and its protocol counters; ``stats`` the routing counters; while it
        runs, ``mailbox`` the hub's kind and counters (Redis: backend, written, dropped,
        replication shortfalls, ``ASK`` followed) and ``blob_storage`` where blobs live.
        """
        local = list(self._agents.values())
        remote = [i for i in self.directory.registry().values() if i.location == "remote"]
        diagnostics: dict[str, Any] = {
            "node_id": self.node_id,
            "state": self._state,
            "p2p_enabled": self.config.p2p_enabled,
            "local_agents": [{"agent_id": a.agent_id, "role": a.role} for a in local],
            "remote_agents": [
                {"agent_id": i.agent_id, "role": i.role, "node_id": i.node_id} for i in remote
            ],
            "stats": dataclasses.asdict(self.stats),
            "late_replies": self.late_replies,
        }
        node = self._cluster_node
        if self._state != "running":
            status = "stopped"
            swim: dict[str, Any] = {"status": "stopped" if self.config.p2p_enabled else "off"}
        elif node is None:
            status = "local"
            swim = {"status": "off"}
        else:
            members = node.swim.members()
            others = [m for m in members if m.name != self.node_id]
            states = {m.name: m.state.name.lower() for m in others}
            live = [m for m in others if states[m.name] in ("alive", "suspect")]
            suspect = [m for m in others if states[m.name] == "suspect"]
            status = "isolated" if not live else "degraded" if suspect else "healthy"
            swim = {
                "status": "running",
                "address": f"{self.config.bind_host}:{self.config.bind_port}",
                "incarnation": node.swim.local_member.incarnation,
                "members": states,
                "counters": node.swim.stats(),
                "cluster": node.stats(),
            }
        services = self._services
        if services is not None:
            hub_stats = getattr(services.mailboxes, "stats", None)
            diagnostics["mailbox"] = {
                "kind": services.mailboxes.kind,
                **(hub_stats() if callable(hub_stats) else {}),
            }
            diagnostics["blob_storage"] = services.blob_storage.location
        diagnostics["known_peers"] = sorted(
            name for name, state in swim.get("members", {}).items() if state in ("alive", "suspect")
        )
        diagnostics["swim"] = swim
        diagnostics["status"] = status
        return diagnostics

    @trio_side_sync
    def add(self, agent: type[Agent] | Agent, agent_id: str | None = None) -> Agent:
        """Register an agent class (or instance); returns the agent.

        The agent is discoverable at once. In a running mesh its ``setup()`` is scheduled;
        use :meth:`start_agent` to wait for it.
        """
        instance = self._register(agent, agent_id)
        if self._state == "running":
            assert self._agents_nursery is not None
            self._agents_nursery.start_soon(self._run_agent, instance)
        else:
            self._unstarted.append(instance)
        return instance

    @trio_side
    async def start_agent(self, agent: type[Agent] | Agent, agent_id: str | None = None) -> Agent:
        """Add an agent to the running mesh and return once its ``setup()`` finished."""
        if self._state != "running":
            raise MeshError(f"start_agent() needs a running mesh (this one is {self._state})")
        instance = self._register(agent, agent_id)
        assert self._agents_nursery is not None
        await self._agents_nursery.start(self._run_agent, instance)
        return instance

    @trio_side
    async def run_task(self, target: str, task: Any, context: dict[str, Any] | None = None) -> Any:
        """Give ``task`` to a local task-style agent (by agent_id, or the first of a role)."""
        agent = self._agents.get(target)
        if agent is None:
            agent = next((a for a in self._agents.values() if a.role == target), None)
        if agent is None:
            raise ValueError(f"run_task: no local agent matches {target!r}")
        return await agent.execute_task(task, context)

    def _register(self, agent: type[Agent] | Agent, agent_id: str | None) -> Agent:
        if self._state in ("stopping", "stopped"):
            raise MeshError(f"cannot add an agent to a {self._state} mesh")
        cls = agent if isinstance(agent, type) else type(agent)
        facts = self._classes.get(cls)
        if facts is None:
            _check_agent_class(cls)
            logger = logging.getLogger(f"jarvis_trio.agents.{cls.role}")
            facts = self._classes[cls] = (logger, has_task_entry(cls), tuple(cls.capabilities))
        logger, task_style, capabilities = facts
        instance = agent() if isinstance(agent, type) else agent
        if "_peers" not in vars(instance):  # a subclass __init__ that skipped super().__init__()
            Agent.__init__(instance, getattr(instance, "agent_id", None))
        if instance._peers is not None:
            raise MeshError(f"{instance!r} is already part of a mesh")
        chosen = agent_id or instance.agent_id or self._new_agent_id(cls.role)
        if not isinstance(chosen, str) or not chosen or len(chosen) > MAX_AGENT_ID_LENGTH:
            raise ValueError(
                f"agent_id must be a non-empty string of at most {MAX_AGENT_ID_LENGTH} "
                f"characters, got {chosen!r}"
            )
        inbox = AgentInbox(self.config.inbox_size)
        info = PeerInfo(chosen, cls.role, capabilities, cls.description, self.node_id)
        self.router.directory.add_local(info, inbox)  # raises DuplicateAgentError
        instance._bind(
            chosen,
            inbox,
            PeerClient(self.router, chosen, cls.role, inbox, host=self._host_slot),
            AgentLogger(logger, {"agent_id": chosen}),
            task_style=task_style,
            host=self._host_slot,
        )
        self._agents[chosen] = instance
        return instance

    def _new_agent_id(self, role: str) -> str:
        while True:
            candidate = f"{role}-{self.router.random_hex(8)}"
            if candidate not in self._agents:
                return candidate

    # -- one agent's life ---------------------------------------------------------------

    async def _run_agent(
        self,
        agent: Agent,
        batch: _StartBatch | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        report_setup = task_status is not trio.TASK_STATUS_IGNORED
        CURRENT_NODE.set(self.node_id)  # start_agent() may run in a task of the caller's
        CURRENT_AGENT.set(agent.agent_id)
        services = self._services
        assert services is not None
        if self._asyncio_portal is not None:  # run_asyncio() in this agent's code
            use_portal(self._asyncio_portal)
        inbox = agent._inbox
        self._running.value += 1
        try:
            agent._inject(services)
            try:
                await agent.setup()
            except Exception as exc:
                if report_setup:
                    raise
                if batch is not None:
                    batch.fail(exc)
                else:
                    agent._logger.exception("setup() failed; the agent is removed")
                return
            agent._set_started(True)
            self._greet_peer_hooks(agent)
            if batch is not None:
                batch.done_one()
            task_status.started()
            policy = type(agent).restart_policy or self.restart_policy
            await supervise(agent._supervised(), policy, self._rng, self._fail)
        finally:
            agent._set_started(False)
            self._peer_hook_since.pop(agent.agent_id, None)
            inbox.request_stop()
            inbox.close()
            self.router.directory.remove_local(agent.agent_id)
            self._agents.pop(agent.agent_id, None)
            with trio.CancelScope(shield=True) as bounded:
                bounded.deadline = trio.current_time() + self.config.stop_grace_period
                try:
                    await agent.teardown()
                except Exception:
                    agent._logger.exception("teardown() failed")
            if bounded.cancelled_caught:
                agent._logger.warning("teardown() was cut off after the grace period")
            release = getattr(services.mailboxes, "release", None)
            if release is not None:
                release(agent.agent_id)
            self._running.value -= 1

    def _fail(self, crash: AgentCrashed) -> None:
        if self._failure is None:
            self._failure = crash
        self._stop_requested.set()

    # -- the node -----------------------------------------------------------------------

    async def _main(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._state = "starting"
        CURRENT_NODE.set(self.node_id)  # every task of the node inherits it (log records)
        try:
            # agent code runs on this thread while the node runs: asyncio used there raises
            # AsyncioMisuseError naming what to use instead (under a plain trio.run as on
            # the asyncio host's thread, which holds the same guard), not "no running loop"
            with asyncio_guard():
                await self._run_node(task_status)
        finally:
            self._begin_stopping()
            self._state = "stopped"
            self._agents_nursery = None
            self.events.close()
            self._done.set()
        if self._failure is not None:
            raise self._failure

    async def _run_node(self, task_status: trio.TaskStatus[None]) -> None:
        """The node's life inside :meth:`_main`: its services, system tasks and agents."""
        async with (
            self._asyncio_calls(),
            open_node_services(self.config, self.node_id, host=self._host_slot) as services,
        ):
            self._services = services
            async with trio.open_nursery() as system:
                self.router.background = system
                self.router.now = trio.lowlevel.current_clock().current_time
                system.start_soon(self.router.pending.reap_forever)
                system.start_soon(self._dispatch_peer_hooks)
                if self.config.admin_port is not None:
                    # loaded only when asked for, like the cross-node layer; it serves
                    # from this node's own nursery
                    from .ops.admin import serve_admin

                    self.admin_address = await system.start(serve_admin, self)
                self.router.accepting = True
                async with self._cluster(), trio.open_nursery() as agents:
                    self._agents_nursery = agents
                    while self._unstarted:
                        # set up concurrently; the first setup() error fails the start
                        batch = _StartBatch(len(self._unstarted))
                        for agent in self._unstarted:
                            agents.start_soon(self._run_agent, agent, batch)
                        self._unstarted.clear()
                        await batch.wait()
                    self._state = "running"
                    _log.info(
                        "node %s running: %d agent(s), %s mailboxes, blob storage in %s%s",
                        self.node_id,
                        len(self._agents),
                        services.mailboxes.kind,
                        services.blob_storage.location,
                        ", p2p on" if self.config.p2p_enabled else "",
                    )
                    task_status.started()
                    await self._stop_requested.wait()
                    await self._shutdown(agents)
                self.router.background = None
                system.cancel_scope.cancel()

    @asynccontextmanager
    async def _asyncio_calls(self) -> AsyncIterator[None]:
        """Where run_asyncio() sends coroutines: the host program's loop when this node is
        hosted from asyncio, else a loop of the node's own (a thread, started on first use,
        stopped with the node)."""
        owned: OwnedLoopPortal | None = None
        portal = current_portal()
        if portal is None:
            portal = owned = OwnedLoopPortal(f"{self.node_id}-asyncio")
        self._asyncio_portal = portal
        use_portal(portal, for_run=True)
        try:
            yield
        finally:
            release_run_portal(portal)
            self._asyncio_portal = None
            if owned is not None:
                await owned.aclose()

    @asynccontextmanager
    async def _cluster(self) -> AsyncIterator[None]:
        if not self.config.p2p_enabled:
            yield
            return
        from .cluster import open_cluster  # here, so that a node without p2p never loads pyzmq

        async with open_cluster(
            self.config,
            node_id=self.node_id,
            router=self.router,
            on_node_failed=self.router.pending.fail_node,
            events=self.events,
            keyring=self.keyring,
        ) as node:
            self._cluster_node = node
            try:
                yield
            finally:
                self._cluster_node = None

    def _begin_stopping(self) -> None:
        if self._state in ("new", "starting", "running"):
            self._state = "stopping"
        self.router.stopping = True
        self.router.accepting = False
        self.router.pending.close()
        for agent in list(self._agents.values()):
            agent._inbox.request_stop()

    async def _shutdown(self, agents: trio.Nursery) -> None:
        self._begin_stopping()
        if self._cluster_node is not None:
            # leave first: peers drop our agents and fail what they wait on from us at once,
            # rather than after the grace period plus SWIM's failure detection
            await self._cluster_node.leave()
        with trio.move_on_after(self.config.stop_grace_period):
            await self._running.wait_value(0)
        agents.cancel_scope.cancel()

    # -- documented lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the node and every added agent; returns once all ``setup()`` finished and,
        with seeds, once the node has joined (see :attr:`joined` and ``join_timeout``).

        Awaited from asyncio, the node runs on the loop's Trio host (started on first use).
        """
        if on_trio():
            await self._start()
        else:
            await start_hosted(self, self._start)

    async def _start(self) -> None:
        if self._state != "new" or self._exit_stack is not None:
            raise MeshError(f"start() on a {self._state} mesh: a mesh starts once")
        started = trio.Event()
        trio.lowlevel.spawn_system_task(
            self._host_in_system_task, started, context=contextvars.copy_context()
        )
        await started.wait()
        if self._failure is not None and not self._started_ok:
            raise self._failure

    async def _host_in_system_task(self, started: trio.Event) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._main)
                self._started_ok = True
                started.set()
        except Exception as exc:
            failure = _unwrap(exc) if isinstance(exc, BaseExceptionGroup) else exc
            self._failure = failure
            if started.is_set():
                _log.error("node %s stopped on an error", self.node_id, exc_info=failure)
        finally:
            started.set()
            self._done.set()

    async def stop(self) -> None:
        """Stop the node (idempotent); raises the error that stopped it, if any.

        Awaited from asyncio, the node stops on its Trio host, and the last node hosted there
        stops the host.
        """
        if on_trio():
            await self._stop()
        else:
            await stop_hosted(self, self._stop)

    async def _stop(self) -> None:
        if self._state == "new" and self._exit_stack is None:
            self._state = "stopped"
            self._done.set()
            return
        self._stop_requested.set()
        if self._called_from_own_agent():
            # an agent stopping its own node: waiting here would wait for itself; its
            # handler returns, the agent goes idle and the shutdown proceeds
            await trio.lowlevel.checkpoint()
            return
        await self._done.wait()
        if self._failure is not None:
            raise self._failure

    def _called_from_own_agent(self) -> bool:
        agents = self._agents_nursery
        if agents is None:
            return False
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None:
            nursery = task.parent_nursery
            if nursery is agents:
                return True
            task = None if nursery is None else nursery.parent_task
        return False

    @trio_side
    async def run_forever(self) -> None:
        """Wait until the node stops; raises the error that stopped it, if any."""
        if self._state == "new":
            raise MeshError("run_forever() needs a started mesh")
        await self._done.wait()
        if self._failure is not None:
            raise self._failure

    @asynccontextmanager
    async def _hosted(self) -> AsyncIterator[Mesh]:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._main)
                try:
                    yield self
                finally:
                    self._stop_requested.set()
        except BaseExceptionGroup as group:
            exc = _unwrap(group)
            if exc is group:
                raise
            raise exc from exc.__cause__

    async def __aenter__(self) -> Mesh:
        if not on_trio():
            # a Trio nursery cannot be opened in one crossing and closed in another
            await self.start()
            return self
        if self._state != "new" or self._exit_stack is not None:
            raise MeshError(f"cannot enter a {self._state} mesh: a mesh starts once")
        stack = AsyncExitStack()
        await stack.enter_async_context(self._hosted())
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if not on_trio():
            await self.stop()
            return False
        stack = self._exit_stack
        assert stack is not None
        return bool(await stack.__aexit__(exc_type, exc, tb))

    # -- operating: membership, readiness, events ----------------------------------------

    @property
    def mailboxes(self) -> MailboxHub:
        """The node's mailbox hub while the mesh runs: the dead letters of any agent are
        listed, inspected, replayed and purged through it (``dead_letters(agent_id)``, ...)."""
        services = self._services
        if services is None:
            raise MeshError(f"the mailboxes of a {self._state} mesh are not open")
        return services.mailboxes

    def members(self) -> list[MemberInfo]:
        """A snapshot of the cluster as this node sees it (SWIM view), this node first.

        Without P2P the node answers with itself alone.
        """
        cluster = self._cluster_node
        if cluster is not None:
            return cluster.members()
        return [
            MemberInfo(
                name=self.node_id,
                address=f"{self.config.bind_host}:{self.config.bind_port}",
                data_port=0,
                state="alive" if self._state in ("starting", "running") else "left",
                incarnation=0,
                agents=len(self._agents),
                since=self._started_at,
                local=True,
            )
        ]

    def membership_events(
        self, *, maxlen: int = DEFAULT_MAXLEN, agents: bool = False
    ) -> EventStream:
        """A bounded stream of what changes from now on: ``async with mesh.membership_events()
        as events: async for event in events``.

        Membership kinds: ``joined``, ``updated``, ``suspect``, ``failed``, ``left``,
        ``rejoined``; with ``agents=True`` also ``agent_added`` / ``agent_removed`` (local and
        remote agents). A consumer that falls behind loses the oldest events (never slowing
        the protocol down) and then sees one ``lost`` event with the count. The stream ends
        when the node stops.
        """
        return self.events.open(maxlen=maxlen, agents=agents)

    @property
    def services(self) -> NodeServices | None:
        """The node's services while it runs: mailbox hub, blob storage, Redis store, auth."""
        return self._services

    @property
    def cluster_node(self) -> ClusterNode | None:
        """The cross-node layer while P2P runs (its stats, SWIM node and bridge)."""
        return self._cluster_node

    @property
    def joined(self) -> bool:
        """True without P2P or seeds; with them, once a seed answered and the agent
        directories of the members it named arrived -- what ``start()`` waits for, up to
        ``join_timeout`` (after which the node keeps trying and this turns true when it
        joins)."""
        cluster = self._cluster_node
        if not self.config.p2p_enabled:
            return True
        return cluster is not None and cluster.joined

    @property
    def ready(self) -> bool:
        """Every agent's ``setup()`` has finished and, with P2P and seeds, the node joined
        (what ``/readyz`` answers)."""
        return self._state == "running" and self.joined

    def _agent_changed(self, kind: str, info: PeerInfo, reason: str | None) -> None:
        self.events.publish(ClusterEvent(kind, time.time(), agent=info, reason=reason))
        if info.location != "remote" or not self._hooked_agents():
            return
        if len(self._peer_hooks) == self._peer_hooks.maxlen:
            self.peer_hooks_dropped += 1
        self._peer_hook_seq += 1
        self._peer_hooks.append((self._peer_hook_seq, kind, info, reason))
        self._peer_hooks_wakeup.unpark_all()

    def _greet_peer_hooks(self, agent: Agent) -> None:
        """``agent`` finished ``setup()``: the changes numbered from now on are for it to hear,
        and the remote agents known now are announced to it first. Joining is part of
        starting, so a joining node's agents start with the agents of the nodes it joined
        through known already; without the greeting they would never hear of them."""
        cls = type(agent)
        joined_hook = cls.on_peer_joined is not Agent.on_peer_joined
        if not joined_hook and cls.on_peer_left is Agent.on_peer_left:
            return
        self._peer_hook_since[agent.agent_id] = self._peer_hook_seq
        if not joined_hook:
            return
        registry = self.router.directory.registry()
        known = tuple(info for info in registry.values() if info.location == "remote")
        if known:
            self._peer_greetings.append((agent, known))
            self._peer_hooks_wakeup.unpark_all()

    def _hooked_agents(self) -> list[Agent]:
        return [
            agent
            for agent in self._agents.values()
            if type(agent).on_peer_joined is not Agent.on_peer_joined
            or type(agent).on_peer_left is not Agent.on_peer_left
        ]

    async def _dispatch_peer_hooks(self) -> None:
        """Call ``on_peer_joined`` / ``on_peer_left`` of the local agents that define them, one
        change at a time, in order; a hook that raises is logged and the others still run.
        A greeting goes before every change not yet handled: the changes its agent hears
        are the ones numbered after it, so each remote agent is announced once."""
        queue = self._peer_hooks
        greetings = self._peer_greetings
        since = self._peer_hook_since
        while True:
            while not queue and not greetings:
                await self._peer_hooks_wakeup.park()
            if greetings:
                agent, known = greetings.popleft()
                for info in known:
                    if not agent._started:
                        break
                    await self._call_peer_hook(agent, "agent_added", info, None)
                continue
            seq, kind, info, reason = queue.popleft()
            for agent in self._hooked_agents():
                if agent._started and since.get(agent.agent_id, seq) < seq:
                    await self._call_peer_hook(agent, kind, info, reason)

    @staticmethod
    async def _call_peer_hook(agent: Agent, kind: str, info: PeerInfo, reason: str | None) -> None:
        try:
            if kind == "agent_added":
                await agent.on_peer_joined(info)
            else:
                await agent.on_peer_left(info, reason or "removed")
        except Exception:
            agent._logger.exception("%s hook failed for %s", kind, info.agent_id)

    # -- inspection ---------------------------------------------------------------------

    @property
    def directory(self) -> AgentDirectory[AgentInbox]:
        """Local and remote agents; ``directory.version`` counts local changes."""
        return self.router.directory

    @property
    def stats(self) -> NodeStats:
        """Counters of dropped and refused messages."""
        return self.router.stats

    @property
    def late_replies(self) -> int:
        """Responses dropped because their request was gone (cancelled, timed out, expired)."""
        return self.router.pending.late_replies

    def __repr__(self) -> str:
        return f"<Mesh {self.node_id} {self._state} agents={len(self._agents)}>"


class _StartBatch:
    """Agents set up together at node start: done when all have, or when one failed."""

    __slots__ = ("_done", "_failure", "_remaining")

    def __init__(self, count: int) -> None:
        self._remaining = count
        self._done = trio.Event()
        self._failure: Exception | None = None
        if count == 0:
            self._done.set()

    def done_one(self) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            self._done.set()

    def fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc
        self._done.set()

    async def wait(self) -> None:
        await self._done.wait()
        if self._failure is not None:
            raise self._failure


def _check_agent_class(cls: type[Agent]) -> None:
    if not issubclass(cls, Agent):
        raise AgentDefinitionError(f"{cls!r} is not an Agent subclass")
    role = getattr(cls, "role", "")
    if not isinstance(role, str) or not role.strip():
        raise AgentDefinitionError(f"{cls.__name__} has no role: set the class attribute `role`")
    caps = cls.capabilities
    if (
        isinstance(caps, str)
        or not isinstance(caps, Sequence)
        or not all(isinstance(c, str) for c in caps)
    ):
        raise AgentDefinitionError(f"{cls.__name__}.capabilities must be a list of strings")
    limit = cls.max_concurrency
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise AgentDefinitionError(
            f"{cls.__name__}.max_concurrency must be a positive int, got {limit!r}"
        )


@asynccontextmanager
async def open_mesh(
    config: Mapping[str, Any] | MeshConfig | None = None,
    *,
    agents: Sequence[type[Agent] | Agent] = (),
    **options: Any,
) -> AsyncIterator[Mesh]:
    """Run a node for the duration of the block; ``agents`` are started before it begins.

    ``options`` are those of :class:`Mesh` (``restart_policy``, ``rng``, ``notify_timeout``,
    ``max_pending``, ``env_file``, ``environ``).
    """
    mesh = Mesh(config, **options)
    for agent in agents:
        mesh.add(agent)
    async with mesh._hosted():
        yield mesh
