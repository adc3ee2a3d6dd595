"""A real Redis Cluster and a real Sentinel group on loopback, for tests and benchmarks.

::

    with RedisClusterServers(masters=3, replicas=1) as cluster:
        config = MeshConfig.load({"redis_url": cluster.url})   # redis+cluster://...
        victim = cluster.master_of_key("jarvis:mbox:{scout-1}")
        cluster.kill(victim)                                    # SIGKILL, as in a crash
        cluster.wait_for_failover(victim)                       # a replica took its slots

    with RedisSentinelServers() as group:                       # 1 master, 1 replica, 3 sentinels
        config = MeshConfig.load({"redis_url": group.url})     # redis+sentinel://.../mymaster
        group.kill_master(); group.wait_for_failover()

Every process is a :class:`~jarvis_trio.testing.redis_server.RedisServer` on a free port with
its own directory. Failure detection is made fast for tests (``node_timeout`` 1000 ms for the
cluster, ``down_after`` 1000 ms for Sentinel) and replicas sync without the default 5 s
diskless delay, so a six-node cluster is ready in about two seconds. The cluster is formed
with ``redis-cli --cluster create`` (package ``redis-tools``), exactly as an operator would.

Readiness is a condition on the servers' own reports (``CLUSTER INFO``, ``INFO
replication``, ``SENTINEL MASTER``), checked again each time one of the group's servers logs a
line, under a deadline: Redis logs every change these waits are for (a replica's sync done,
``Cluster state changed``, a Sentinel's ``+slave``, ``+sentinel``, ``+switch-master``), so a
wait lasts as long as the change and nothing polls. Replication catching up logs nothing:
:meth:`RedisClusterServers.wait_replicated` writes a marker and blocks in ``WAIT`` instead.
The methods block; from Trio call them through ``trio.to_thread.run_sync``. ``close()`` (or
leaving the ``with`` block) always stops every process it started, also after a failed start.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import time
from collections.abc import Callable
from typing import Any

import redis

from ._managed import Managed
from .ports import free_port
from .redis_server import LogBell, RedisServer, RedisServerError, find_program

__all__ = ["RedisClusterServers", "RedisSentinelServers", "find_redis_cli"]


def find_redis_cli() -> str | None:
    """Path of ``redis-cli`` (package ``redis-tools``), or ``None`` when it is missing."""
    return find_program("redis-cli")


def _admin(port: int, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=1.0
    )


def _replication(port: int) -> dict[str, Any]:
    """``INFO replication`` of the server on ``port``."""
    with _admin(port) as admin:
        info: Any = admin.info("replication")
    return dict(info)


def _replicating(port: int) -> bool:
    """The server on ``port`` is a replica whose link to its master is up."""
    info = _replication(port)
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


class _Group(Managed):
    """Start/close bookkeeping shared by both fixtures, and the bell their servers ring."""

    def __init__(self) -> None:
        self.servers: list[RedisServer] = []
        self.bell = LogBell()

    def _server(self, **options: Any) -> RedisServer:
        """A new member of the group, started."""
        server = RedisServer(bell=self.bell, **options)
        self.servers.append(server)
        server.start()
        return server

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Return once ``condition()`` holds: checked now, then again after each line any
        server of the group logs (or its exit), so it suits a change Redis logs. A Redis error
        counts as "not yet": a node still starting or just killed. ``RedisServerError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            rung = self.bell.rung
            try:
                if condition():
                    return
            except (redis.RedisError, OSError):
                pass
            if not self.bell.wait_past(rung, deadline - time.monotonic()):
                raise RedisServerError(f"timed out after {timeout:g} s waiting for {what}")

    def close(self) -> None:
        """Stop every process and remove its directory (safe to call twice)."""
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.close()

    def kill(self, server: RedisServer) -> None:
        """SIGKILL one process, as in a crash (nothing is flushed or handed over)."""
        server.kill()

    def start(self) -> None:
        """Start every process and form the group; on any failure, close what started."""
        try:
            self._form()
        except BaseException:
            self.close()
            raise

    def _form(self) -> None:
        raise NotImplementedError


class RedisClusterServers(_Group):
    """``masters`` masters with ``replicas`` replicas each, formed by ``redis-cli``."""

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout: int = 1000,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        if masters < 3:
            raise ValueError(f"a Redis Cluster needs at least 3 masters, got {masters}")
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.start_timeout = start_timeout

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node (killed ones are skipped)."""
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in self.servers)
        return f"redis+cluster://{hosts}"

    def _form(self) -> None:
        """Start the nodes, form the cluster, return once every node serves every slot."""
        cli = find_redis_cli()
        if cli is None:
            raise RedisServerError("redis-cli is not installed (package redis-tools)")
        args = [
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(self.node_timeout),
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",
            "--repl-ping-replica-period", "1",
        ]  # fmt: skip
        for _ in range(self.masters * (1 + self.replicas)):
            # the bus port is chosen too: the default (port + 10000) may be taken or > 65535
            self._server(extra_args=[*args, "--cluster-port", str(free_port())])
        create = [cli, "--cluster", "create"]
        create += [f"127.0.0.1:{server.port}" for server in self.servers]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(
            create, capture_output=True, text=True, timeout=self.start_timeout, check=False
        )
        if done.returncode != 0:
            raise RedisServerError(
                f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}"
            )
        self.wait_until(self._healthy, self.start_timeout, "the cluster to serve every slot")

    def _healthy(self) -> bool:
        for server in self.servers:
            if not server.running:
                continue
            fields = _cluster_info(server.port)
            if fields.get("cluster_state") != "ok":
                return False
            if int(fields.get("cluster_known_nodes", 0)) != len(self.servers):
                return False
            role = _replication(server.port)
            if role.get("role") == "slave" and role.get("master_link_status") != "up":
                return False
        return True

    def nodes(self) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as seen by the first live node: id, port, role, slots."""
        for server in self.servers:
            if server.running:
                with _admin(server.port) as admin:
                    raw: Any = admin.execute_command("CLUSTER", "NODES")
                return _parse_nodes(_text(raw))
        raise RedisServerError("no cluster node is running")

    def server_on(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def master_of_key(self, key: str) -> RedisServer:
        """The master currently serving ``key``'s slot."""
        slot = key_slot(key)
        master = self._master_serving(slot)
        if master is None:
            raise RedisServerError(f"no master serves slot {slot}")
        return master

    def _master_serving(self, slot: int) -> RedisServer | None:
        for node in self.nodes():
            if node["master"] and not node["failed"] and _serves(node, slot):
                return self.server_on(node["port"])
        return None

    def wait_for_failover(self, old_master: RedisServer, timeout: float = 20.0) -> RedisServer:
        """Return the replica that took over ``old_master``'s slots, once the cluster is ok."""
        slots: list[tuple[int, int]] = next(
            (n["slots"] for n in self.nodes() if n["port"] == old_master.port), []
        )
        if not slots:
            raise RedisServerError(
                f"port {old_master.port} serves no slot (any more): call wait_for_failover "
                "right after the kill, or rejoin() once the failover is done"
            )
        slot = slots[0][0]

        def promoted() -> bool:
            for node in self.nodes():
                if node["port"] == old_master.port or not node["master"] or node["failed"]:
                    continue
                if _serves(node, slot):
                    return _cluster_info(node["port"]).get("cluster_state") == "ok"
            return False

        self.wait_until(promoted, timeout, f"a replica of port {old_master.port} to take its slots")
        master = self._master_serving(slot)
        if master is None:
            raise RedisServerError("failover finished but no master serves the slot")
        return master

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A live replica of ``master``."""
        nodes = self.nodes()
        master_id = next(n["id"] for n in nodes if n["port"] == master.port)
        for node in nodes:
            if node["replica_of"] == master_id and not node["failed"]:
                return self.server_on(node["port"])
        raise RedisServerError(f"port {master.port} has no live replica")

    def wait_replicated(self, master: RedisServer, timeout: float = 10.0) -> None:
        """Return once every replica of ``master`` (at least one) has all of its replication
        stream: a marker key is written and deleted, and ``WAIT`` blocks until each replica
        acknowledged it."""
        slots = next(node["slots"] for node in self.nodes() if node["port"] == master.port)
        marker = next(
            key
            for key in (f"jarvis:testing:replicated:{n}" for n in itertools.count())
            if any(low <= key_slot(key) <= high for low, high in slots)
        )
        with _admin(master.port, timeout=timeout + 2.0) as admin:
            replicas = max(1, int(admin.info("replication")["connected_slaves"]))
            admin.set(marker, 1)
            admin.delete(marker)
            acked = int(admin.execute_command("WAIT", replicas, int(timeout * 1000)))
        if acked < replicas:
            raise RedisServerError(
                f"timed out after {timeout:g} s waiting for the replicas of port "
                f"{master.port} to catch up ({acked} of {replicas})"
            )

    def rejoin(self, old_master: RedisServer, timeout: float = 20.0) -> None:
        """Restart a killed node (same port, same ``nodes.conf``); return once it replicates
        the master that took its slots, as a restarted pod does."""
        old_master.start()
        self.wait_until(
            lambda: _replicating(old_master.port),
            timeout,
            f"port {old_master.port} to rejoin as a replica",
        )


def _cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of the node on ``port``, as fields."""
    with _admin(port) as admin:
        info: Any = admin.execute_command("CLUSTER", "INFO")
    return dict(line.split(":", 1) for line in _text(info).split() if ":" in line)


def _serves(node: dict[str, Any], slot: int) -> bool:
    return any(low <= slot <= high for low, high in node["slots"])


def _parse_nodes(text: str) -> list[dict[str, Any]]:
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        address, flags = parts[1], parts[2].split(",")
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        nodes.append(
            {
                "id": parts[0],
                "port": port,
                "master": "master" in flags,
                "replica_of": parts[3] if parts[3] != "-" else None,
                "failed": "fail" in flags or "fail?" in flags,
                "slots": slots,
            }
        )
    return nodes


def key_slot(key: str) -> int:
    """The cluster slot of ``key`` (CRC16 of its hash tag, modulo 16384)."""
    from redis.crc import key_slot as _key_slot

    return int(_key_slot(key.encode()))


class RedisSentinelServers(_Group):
    """One master, ``replicas`` replicas and ``sentinels`` Sentinels watching ``service``."""

    def __init__(
        self,
        *,
        service: str = "mymaster",
        replicas: int = 1,
        sentinels: int = 3,
        down_after: int = 1000,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.service = service
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.down_after = down_after
        self.start_timeout = start_timeout
        self.master: RedisServer | None = None
        self.replicas: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def _form(self) -> None:
        """Start master, replicas and Sentinels; return once every Sentinel knows them all."""
        quick = ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]
        master = self.master = self._server(extra_args=quick)
        for _ in range(self.replica_count):
            follow = ["--replicaof", "127.0.0.1", str(master.port)]
            self.replicas.append(self._server(extra_args=[*quick, *follow]))
        quorum = self.sentinel_count // 2 + 1
        conf = (
            f"sentinel monitor {self.service} 127.0.0.1 {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after}\n"
            f"sentinel failover-timeout {self.service} {max(3000, 3 * self.down_after)}\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        for _ in range(self.sentinel_count):
            self.sentinels.append(self._server(sentinel_config=conf))
        self.wait_until(self._ready, self.start_timeout, "the Sentinels to know every server")

    def _ready(self) -> bool:
        if not all(_replicating(server.port) for server in self.replicas):
            return False
        for sentinel in self.sentinels:
            with _admin(sentinel.port) as admin:
                state: Any = admin.execute_command("SENTINEL", "MASTER", self.service)
                fields = _pairs(state)
                if int(fields.get("num-slaves", 0)) < self.replica_count:
                    return False
                if int(fields.get("num-other-sentinels", 0)) < self.sentinel_count - 1:
                    return False
        return True

    def master_port(self) -> int:
        """The master's port as the first live Sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.running:
                return self._master_port_of(sentinel)
        raise RedisServerError("no Sentinel is running")

    def _master_port_of(self, sentinel: RedisServer) -> int:
        with _admin(sentinel.port) as admin:
            reply: Any = admin.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(reply[1])

    def current_master(self) -> RedisServer:
        return next(s for s in self.servers if s.port == self.master_port())

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns it."""
        victim = self.current_master()
        victim.kill()
        return victim

    def wait_for_failover(self, old_master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Return the new master once every Sentinel names it and it accepts writes."""

        def moved() -> bool:
            ports = {self._master_port_of(sentinel) for sentinel in self.sentinels}
            if len(ports) != 1 or old_master.port in ports:
                return False
            return _replication(ports.pop()).get("role") == "master"

        self.wait_until(moved, timeout, f"Sentinel to fail over from port {old_master.port}")
        return self.current_master()


def _pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    items = [_text(item) for item in reply]
    return dict(zip(items[::2], items[1::2], strict=False))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
