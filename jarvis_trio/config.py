"""Mesh configuration: one validated, immutable value built from four sources.

Precedence, highest first: the config dict given to ``Mesh`` / ``open_mesh``, the process
environment, a ``.env`` file in the working directory, the defaults below. Reading ``.env``
never touches ``os.environ`` (the original loaded it into the process environment as a side
effect of an import). Every bad value fails at start with one :class:`ConfigError` naming the
key, the value and what was expected, so a typo never turns into a silent default.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

__all__ = ["MeshConfig", "SeedAddress", "parse_host_port", "read_env_file"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
AUTH_MODES = ("production", "disabled")
_MAX_PEER_CONNECTIONS = 60_000
_log = logging.getLogger("jarvis_trio.config")

#: JarvisCore configuration keys that mean nothing here, with the reason. A config dict that
#: has them is accepted (code written for JarvisCore runs with its imports changed) and each
#: one is named in a WARNING; a key that is neither known nor listed here is still an error.
JARVISCORE_KEYS: dict[str, str] = {
    "keepalive_*": "connections are kept alive by SWIM's own probes; there is no keepalive loop",
    "state_backend": "workflow state is not kept by the mesh; mailboxes use redis_url",
    "max_parallel": "agents run as Trio tasks without a global limit; set max_concurrency on "
    "an agent class to let it serve several messages at once",
    "redis_store_url": "one Redis serves mailboxes and the store: set redis_url",
}
_JARVISCORE_AUTH_MODES = {
    "development": "auth_mode='development' has no meaning here; treated as 'production' (the "
    "auth manager is injected; run the development Nexus gateway for local flows)",
}


def _jarviscore_reason(key: str) -> str | None:
    if key in JARVISCORE_KEYS:
        return JARVISCORE_KEYS[key]
    if key.startswith("keepalive_"):
        return JARVISCORE_KEYS["keepalive_*"]
    return None


@dataclass(frozen=True, slots=True)
class SeedAddress:
    """A ``host:port`` pair; IPv6 hosts are kept without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, *, key: str = "seed_nodes") -> SeedAddress:
    """Parse ``host:port``, ``[v6]:port``; a missing port or a bare IPv6 literal is an error."""
    raw = text.strip()
    expected = "host:port, or [ipv6]:port"
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(key, text, expected)
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(key, text, "a valid IPv6 address inside [ ]") from None
    else:
        if raw.count(":") > 1:
            raise ConfigError(key, text, "IPv6 seeds written as [addr]:port")
        host, sep, port_text = raw.rpartition(":")
        if not sep or not host:
            raise ConfigError(key, text, f"{expected} (the port is missing)")
    return SeedAddress(host, _port(key, port_text, allow_zero=False))


def _ascii_int(text: str) -> int:
    """``int(text)`` for ASCII digits only: ``int()`` alone accepts any Unicode digit
    ("٧٩٤٦"), which no operator means as a port or a count."""
    text = text.strip()
    if not text.isascii():
        raise ValueError(text)
    return int(text)


def _port(key: str, value: object, *, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    try:
        port = _ascii_int(str(value)) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(key, value, f"a port number from {low} to 65535 (ASCII digits)") from None
    if isinstance(value, bool) or not low <= port <= 65535:
        raise ConfigError(key, value, f"a port number from {low} to 65535")
    return port


def _bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(key, value, "true or false")


def _positive_int(key: str, value: object) -> int:
    try:
        number = _ascii_int(str(value)) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(key, value, "a positive whole number") from None
    if isinstance(value, bool) or number <= 0:
        raise ConfigError(key, value, "a positive whole number")
    return number


def _non_negative_int(key: str, value: object) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(key, value, "a whole number >= 0") from None
    if isinstance(value, bool) or number < 0:
        raise ConfigError(key, value, "a whole number >= 0")
    return number


def _positive_float(key: str, value: object) -> float:
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise ConfigError(key, value, "a positive number of seconds") from None
    if isinstance(value, bool) or not number > 0 or number == float("inf"):
        raise ConfigError(key, value, "a positive number of seconds")
    return number


def _optional_text(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(key, value, "a string")
    return value.strip() or None


def _host(key: str, value: object) -> str:
    text = _optional_text(key, value)
    if text is None:
        raise ConfigError(key, value, "a host name or IP address")
    return text.removeprefix("[").removesuffix("]")


REDIS_SCHEMES = (
    "redis", "rediss", "unix",
    "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel",
)  # fmt: skip


def _url(schemes: tuple[str, ...], *, netloc: bool = True) -> Callable[[str, object], str | None]:
    def parse(key: str, value: object) -> str | None:
        text = _optional_text(key, value)
        if text is None:
            return None
        parts = urlsplit(text)
        missing = not parts.netloc and (netloc or parts.scheme != "file")
        if parts.scheme not in schemes or missing:
            raise ConfigError(
                key, value, f"a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return text.rstrip("/") if parts.scheme.startswith("http") else text

    return parse


def _seeds(key: str, value: object) -> tuple[SeedAddress, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(key, value, "comma-separated host:port, or a list of them")
    seeds = []
    for item in items:
        if isinstance(item, SeedAddress):
            seeds.append(item)
        elif isinstance(item, str):
            seeds.append(parse_host_port(item, key=key))
        else:
            raise ConfigError(key, item, "a host:port string")
    return tuple(seeds)


def _choice(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def parse(key: str, value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigError(key, value, "one of " + ", ".join(choices))
        return text

    return parse


def _cluster_key(key: str, value: object) -> str | None:
    text = _optional_text(key, value)
    if text is not None and len(text) < 16:
        raise ConfigError(key, "<hidden>", "a secret of at least 16 characters")
    return text


def _data_port(key: str, value: object) -> int | None:
    return None if value is None else _port(key, value, allow_zero=True)


def _admin_port(key: str, value: object) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _port(key, value, allow_zero=True)


def _admin_token(key: str, value: object) -> str | None:
    text = _optional_text(key, value)
    if text is not None and len(text) < 16:
        raise ConfigError(key, "<hidden>", "a token of at least 16 characters")
    return text


@dataclass(frozen=True, slots=True)
class _Field:
    env: str | None
    parse: Callable[[str, Any], Any]
    doc: str


_FIELDS: dict[str, _Field] = {
    "p2p_enabled": _Field("P2P_ENABLED", _bool, "join the cross-node mesh (SWIM + ZeroMQ)"),
    "bind_host": _Field("JC_SWIM_HOST", _host, "address the SWIM and data sockets bind to"),
    "bind_port": _Field(
        "JC_SWIM_PORT", lambda k, v: _port(k, v, allow_zero=True), "SWIM UDP port; 0 = any free"
    ),
    "seed_nodes": _Field("JC_SEED_NODES", _seeds, "SWIM addresses of nodes to join through"),
    "join_timeout": _Field(
        "JC_JOIN_TIMEOUT", _positive_float, "seconds start() waits to join through a seed"
    ),
    "join_required": _Field(
        "JC_JOIN_REQUIRED", _bool, "fail start() when no seed answers within join_timeout"
    ),
    "advertise_host": _Field("JC_ADVERTISE_HOST", _optional_text, "address peers reach us at"),
    "data_port": _Field("JC_DATA_PORT", _data_port, "ZeroMQ port; default bind_port + 1000"),
    "node_name": _Field("JC_NODE_NAME", _optional_text, "name of this node in the cluster"),
    "redis_url": _Field("REDIS_URL", _url(REDIS_SCHEMES), "Redis for mailboxes"),
    "redis_min_replicas": _Field(
        "JC_REDIS_MIN_REPLICAS", _non_negative_int, "replicas that must acknowledge a mailbox batch"
    ),
    "auth_mode": _Field(
        "JC_AUTH_MODE",
        _choice(AUTH_MODES),
        "production: inject the Nexus auth manager; disabled: None",
    ),
    "nexus_gateway_url": _Field("NEXUS_GATEWAY_URL", _url(("http", "https")), "Nexus gateway"),
    "blob_storage_path": _Field("JC_BLOB_STORAGE_PATH", _host, "root folder of blob storage"),
    "blob_storage_url": _Field(
        "JC_BLOB_STORAGE_URL",
        _url(("file", "s3", *REDIS_SCHEMES), netloc=False),
        "blob storage: file://path, s3://bucket/prefix or a Redis URL",
    ),
    "s3_endpoint_url": _Field(
        "AWS_ENDPOINT_URL", _url(("http", "https")), "S3-compatible endpoint (default: AWS)"
    ),
    "s3_region": _Field("AWS_REGION", _optional_text, "S3 region (default us-east-1)"),
    "cluster_key": _Field("JC_CLUSTER_KEY", _cluster_key, "shared secret of the cluster"),
    "cluster_name": _Field("JC_CLUSTER_NAME", _host, "cluster name, bound into every MAC"),
    "inbox_size": _Field("JC_INBOX_SIZE", _positive_int, "messages an agent inbox holds"),
    "max_message_size": _Field(
        "JC_MAX_MESSAGE_SIZE", _positive_int, "largest payload (data + context) as JSON, bytes"
    ),
    "stop_grace_period": _Field("JC_STOP_GRACE", _positive_float, "seconds before cancelling"),
    "swim_period": _Field("JC_SWIM_PERIOD", _positive_float, "SWIM protocol period, seconds"),
    "swim_probe_timeout": _Field(
        "JC_SWIM_PROBE_TIMEOUT", _positive_float, "ping ack timeout (default: half the period)"
    ),
    "swim_indirect_probes": _Field("JC_SWIM_INDIRECT", _positive_int, "ping-req helpers (k)"),
    "swim_max_datagram": _Field("JC_SWIM_MAX_DATAGRAM", _positive_int, "largest UDP payload"),
    "max_peer_connections": _Field(
        "JC_MAX_PEER_CONNECTIONS", _positive_int, "outbound data connections open at once"
    ),
    "peer_idle_timeout": _Field(
        "JC_PEER_IDLE_TIMEOUT", _positive_float, "seconds before an unused connection closes"
    ),
    "mailbox_max_deliveries": _Field(
        "JC_MAILBOX_MAX_DELIVERIES", _positive_int, "deliveries before a message is dead-lettered"
    ),
    "admin_port": _Field(
        "JC_ADMIN_PORT", _admin_port, "admin HTTP endpoint port; unset = off, 0 = any free"
    ),
    "admin_host": _Field("JC_ADMIN_HOST", _host, "address the admin endpoint binds to"),
    "admin_token": _Field(
        "JC_ADMIN_TOKEN", _admin_token, "Bearer token of the admin endpoint (else cluster_key)"
    ),
}


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Validated configuration of one node. Build it with :meth:`load`."""

    p2p_enabled: bool = False
    bind_host: str = "127.0.0.1"
    bind_port: int = 7946
    seed_nodes: tuple[SeedAddress, ...] = ()
    join_timeout: float = 5.0
    join_required: bool = False
    advertise_host: str | None = None
    data_port: int | None = None
    node_name: str | None = None
    redis_url: str | None = None
    redis_min_replicas: int = 0
    auth_mode: str = "production"
    nexus_gateway_url: str | None = None
    blob_storage_path: str = "blob_storage"
    blob_storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    cluster_key: str | None = field(default=None, repr=False)
    cluster_name: str = "jarvis"
    inbox_size: int = 1024
    max_message_size: int = 1 << 20
    stop_grace_period: float = 5.0
    swim_period: float = 1.0
    swim_probe_timeout: float | None = None  # None: half of swim_period
    swim_indirect_probes: int = 3
    swim_max_datagram: int = 1400
    max_peer_connections: int = 512
    peer_idle_timeout: float = 300.0
    mailbox_max_deliveries: int = 5
    admin_port: int | None = None
    admin_host: str = "127.0.0.1"
    admin_token: str | None = field(default=None, repr=False)

    @classmethod
    def load(
        cls,
        config: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        env_file: str | Path | None = ".env",
    ) -> MeshConfig:
        """Merge dict > environment > ``.env`` > defaults and validate the result."""
        given = dict(config or {})
        for key in [k for k in given if k not in _FIELDS]:
            reason = _jarviscore_reason(key)
            if reason is not None:
                _log.warning("config key %r (JarvisCore) is ignored: %s", key, reason)
                del given[key]
        mode = given.get("auth_mode")
        if isinstance(mode, str) and mode.strip().lower() in _JARVISCORE_AUTH_MODES:
            _log.warning("config key 'auth_mode': %s", _JARVISCORE_AUTH_MODES[mode.strip().lower()])
            given["auth_mode"] = "production"
        unknown = [key for key in given if key not in _FIELDS]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hint = f"a known key (did you mean {close[0]!r}?)" if close else "a known key"
            raise ConfigError(key, given[key], hint)
        file_values = read_env_file(env_file) if env_file is not None else {}
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, spec in _FIELDS.items():
            if name in given:
                source_key, raw = name, given[name]
            elif spec.env and spec.env in env:
                source_key, raw = spec.env, env[spec.env]
            elif spec.env and spec.env in file_values:
                source_key, raw = spec.env, file_values[spec.env]
            else:
                continue
            values[name] = spec.parse(source_key, raw)
        return cls(**values)._checked()

    def _checked(self) -> MeshConfig:
        data_port = self.data_port
        if data_port is None:
            data_port = 0 if self.bind_port == 0 else self.bind_port + 1000
            if data_port > 65535:
                raise ConfigError(
                    "bind_port", self.bind_port, "a port ≤ 64535 (or set data_port explicitly)"
                )
        if data_port and data_port == self.bind_port:
            raise ConfigError("data_port", data_port, "a port different from bind_port")
        if self.swim_probe_timeout is not None and self.swim_probe_timeout >= self.swim_period:
            raise ConfigError(
                "swim_probe_timeout",
                self.swim_probe_timeout,
                f"less than swim_period ({self.swim_period})",
            )
        if self.swim_max_datagram < 512 or self.swim_max_datagram > 65_000:
            raise ConfigError("swim_max_datagram", self.swim_max_datagram, "512 to 65000 bytes")
        if len(self.cluster_name.encode("utf-8", "surrogatepass")) > 255:
            # the ZAP domain of the data channel carries it, and ZeroMQ takes at most 255
            raise ConfigError("cluster_name", self.cluster_name, "at most 255 UTF-8 bytes")
        if self.max_peer_connections > _MAX_PEER_CONNECTIONS:
            raise ConfigError(
                "max_peer_connections",
                self.max_peer_connections,
                f"at most {_MAX_PEER_CONNECTIONS} connections",
            )
        node_name = self.node_name or f"node-{uuid.uuid4().hex[:8]}"
        return dataclasses.replace(self, data_port=data_port, node_name=node_name)

    def replace(self, **changes: Any) -> MeshConfig:
        """A copy with ``changes`` applied and validated like a config dict."""
        merged = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in _FIELDS:
                raise ConfigError(key, value, "a known key")
            merged[key] = _FIELDS[key].parse(key, value)
        if "bind_port" in changes and "data_port" not in changes:
            merged["data_port"] = None
        return MeshConfig(**merged)._checked()

    @property
    def resolved_data_port(self) -> int:
        """The ZeroMQ port (never ``None`` after :meth:`load`)."""
        assert self.data_port is not None
        return self.data_port

    @property
    def resolved_swim_probe_timeout(self) -> float:
        """The ping ack timeout: ``swim_probe_timeout`` when set, else half of ``swim_period``
        (0.5 s at the default period), so that changing the period alone stays valid."""
        if self.swim_probe_timeout is not None:
            return self.swim_probe_timeout
        return self.swim_period / 2

    @staticmethod
    def documented_keys() -> dict[str, tuple[str | None, str]]:
        """key -> (environment variable, description), for help texts and the README."""
        return {name: (spec.env, spec.doc) for name, spec in _FIELDS.items()}


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse a ``.env`` file (``KEY=VALUE``, ``export``, quotes, ``#`` comments).

    Returns the pairs without touching ``os.environ``; a missing file is an empty mapping.
    A line that is not ``KEY=VALUE`` is a :class:`ConfigError` naming the file and line.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").strip()
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(f"{file}:{number}", line, "KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key] = value
    return values
