"""Free loopback ports chosen at run time, for tests, benchmarks and examples.

A port found free can be taken by someone else before it is bound; callers that bind it at
once make that window negligible on a test machine, and the runtime reports a clear error if
it happens anyway.
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "free_swim_port"]

_DATA_PORT_OFFSET = 1000


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on ``host`` that is free for ``kind`` (TCP by default) right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def free_swim_port(host: str = "127.0.0.1", attempts: int = 100) -> int:
    """A SWIM port whose UDP port and default data port (port + 1000, TCP) are both free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        port = free_port(host, socket.SOCK_DGRAM)
        if port + _DATA_PORT_OFFSET > 65535:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as data:
            try:
                data.bind((host, port + _DATA_PORT_OFFSET))
            except OSError:
                continue
        return port
    raise OSError(f"no free SWIM port pair on {host} after {attempts} attempts")
