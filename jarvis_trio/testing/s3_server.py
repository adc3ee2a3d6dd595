"""A real S3-compatible server on loopback for tests: moto's server, in its own process.

::

    with MotoS3Server() as s3:
        s3.create_bucket("blobs")
        config = MeshConfig.load({"blob_storage_url": "s3://blobs/swarm",
                                  "s3_endpoint_url": s3.endpoint_url})
        # credentials: s3.environ() gives the AWS_* variables a client needs

moto's server speaks the S3 REST protocol over HTTP, including conditional puts
(``If-None-Match: *`` answers 412 when the object exists). It keeps everything in memory:
a stopped server has forgotten its objects. Readiness is its own "Running on" log line, so
starting never sleeps-and-retries. Needs the ``moto[server]`` package (in the ``dev`` extra).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import deque

import httpx

from ._managed import Managed, stop_process
from .ports import free_port

__all__ = ["MotoS3Server"]

_READY = "Running on"


class MotoS3Server(Managed):
    """``python -m moto.server`` on 127.0.0.1 and a free port."""

    access_key_id = "testing"
    secret_access_key = "testing"
    region = "us-east-1"

    def __init__(self, *, port: int | None = None, start_timeout: float = 30.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[str] | None = None
        self._log: deque[str] = deque(maxlen=100)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def start(self) -> None:
        """Start the server; return once it serves requests."""
        ready = threading.Event()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._process = process

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self._log.append(line.rstrip())
                if _READY in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name=f"moto-{self.port}-log", daemon=True).start()
        if not ready.wait(self.start_timeout) or process.poll() is not None:
            self.close()
            log = "\n".join(self._log)
            raise RuntimeError(f"moto S3 server did not start on port {self.port}:\n{log}")

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (moto does not check signatures by default)."""
        answer = httpx.put(f"{self.endpoint_url}/{name}", timeout=10.0)
        if answer.status_code not in (200, 409):
            raise RuntimeError(f"creating bucket {name!r}: {answer.status_code} {answer.text}")

    def close(self) -> None:
        """Stop the server (its objects are gone with it)."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
