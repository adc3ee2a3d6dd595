"""``open_cluster``: what a node with ``p2p_enabled`` runs for its lifetime.

Start order matters: the bridge first (its data port, possibly chosen by the OS, goes into the
membership record), then the SWIM node with this node's metadata -- advertise address, data
port, CURVE public key, directory version -- then the cross-node layer, which the router then
routes through; then the *join*: the block is entered once the node has joined through a seed
and holds the directories of the members the seed named, or ``join_timeout`` passed (a
warning, or with ``join_required`` a :class:`~jarvis_trio.errors.JoinError`), so that a
node's agents are set up in a mesh whose agents they can already reach. Stop order is the
reverse, and graceful: the route is detached, the node *leaves* (its peers drop its agents at
once instead of waiting to detect a failure), and the bridge closes with a bounded linger.
"""

from __future__ import annotations

import errno
import logging
import socket as _socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio
import zmq

from ..config import MeshConfig
from ..errors import ConfigError, TransportError
from ..peers.membership import EventHub
from ..peers.router import Router
from ..swim import Keyring, SwimConfig, SwimNode
from ..transport import Bridge, BridgeSettings, KeyPair, generate_keypair, open_bridge
from .addresses import advertise_host, needs_key_warning, resolve_all
from .node import ClusterNode
from .wire import new_epoch, published_version

__all__ = ["open_cluster"]

log = logging.getLogger("jarvis_trio.cluster")


async def _resolvable(key: str, host: str) -> None:
    try:
        found = await resolve_all(host)
    except _socket.gaierror as exc:
        raise ConfigError(key, host, f"a host name that resolves ({exc.strerror})") from None
    if not found:
        raise ConfigError(key, host, "a host name that resolves (no address)")


async def check_hosts(config: MeshConfig) -> None:
    """Every host the configuration names resolves, or a :class:`ConfigError` names its key
    (instead of a bare ``gaierror`` from deep inside the start)."""
    await _resolvable("bind_host", config.bind_host)
    if config.advertise_host:
        await _resolvable("advertise_host", config.advertise_host)
    for seed in config.seed_nodes:
        try:
            await _resolvable("seed_nodes", seed.host)
        except ConfigError as exc:
            raise ConfigError("seed_nodes", str(seed), exc.expected) from None


@asynccontextmanager
async def _bound_data_channel(config: MeshConfig, keypair: KeyPair | None) -> AsyncIterator[Bridge]:
    """The bridge on the data port; a port in use is a :class:`ConfigError` naming it."""
    async with AsyncExitStack() as stack:
        try:
            bridge = await stack.enter_async_context(
                open_bridge(BridgeSettings.from_config(config, keypair))
            )
        except TransportError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, zmq.ZMQError) and cause.errno == errno.EADDRINUSE):
                raise
            follows = "" if config.data_port != config.bind_port + 1000 else ", or bind_port"
            raise ConfigError(
                "data_port",
                config.resolved_data_port,
                f"a free TCP port on {config.bind_host} for the data channel ({cause}); "
                f"set data_port{follows} to move it",
            ) from exc
        yield bridge


@asynccontextmanager
async def open_cluster(
    config: MeshConfig,
    *,
    node_id: str,
    router: Router,
    on_node_failed: Callable[[str], int],
    events: EventHub | None = None,
    keyring: Keyring | None = None,
) -> AsyncIterator[ClusterNode]:
    """Join the cluster as ``node_id`` for the duration of the block.

    Meanwhile ``router`` sends to other nodes through the yielded :class:`ClusterNode`
    (installed as ``router.remote``, removed at the end), its directory learns their agents,
    ``on_node_failed`` is called for every node that dies or leaves, and membership changes
    are published to ``events``. ``keyring`` (the node's, so that it can be rotated while
    the node runs) defaults to one holding ``config.cluster_key``.
    """
    if keyring is None and config.cluster_key is not None:
        keyring = Keyring([config.cluster_key], config.cluster_name)
    if needs_key_warning(config):
        log.warning(
            "node %s is bound to %s without a cluster key: any host that reaches ports %d "
            "(SWIM) and %d (data) can join the mesh and message its agents; set "
            "JC_CLUSTER_KEY (cluster_key) on every node",
            node_id,
            config.bind_host,
            config.bind_port,
            config.resolved_data_port,
        )
    await check_hosts(config)
    keypair = generate_keypair() if keyring is not None else None
    async with _bound_data_channel(config, keypair) as bridge:
        epoch = new_epoch()
        swim = SwimNode(
            name=node_id,
            bind=(config.bind_host, config.bind_port),
            seeds=[(seed.host, seed.port) for seed in config.seed_nodes],
            config=SwimConfig.from_mesh(config),
            advertise_host=await advertise_host(config),
            resolver=resolve_all,
            data_port=bridge.port,
            public_key=b"" if keypair is None else keypair.public,
            directory_version=published_version(epoch, router.directory.version.value),
            keyring=keyring,
        )
        node = ClusterNode(
            router,
            on_node_failed,
            bridge,
            swim,
            epoch=epoch,
            send_timeout=router.notify_timeout,
            fetch_timeout=min(2.0, max(0.25, 2 * config.swim_period)),
            events=events,
            seeds=[str(seed) for seed in config.seed_nodes],
        )
        async with trio.open_nursery() as nursery:
            subscription = swim.subscribe()
            try:
                await nursery.start(swim.run)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise ConfigError(
                    "bind_port", config.bind_port, f"a free UDP port on {config.bind_host} ({exc})"
                ) from exc
            await nursery.start(node.run, subscription)
            router.remote = node
            try:
                await node.join(config.join_timeout, required=config.join_required)
                yield node
            finally:
                router.remote = None
                with trio.CancelScope(shield=True):
                    await node.leave()  # bounded by the SWIM node's leave_timeout
                nursery.cancel_scope.cancel()
