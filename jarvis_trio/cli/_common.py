"""What the commands share: the one-line error, the admin endpoint client, table output.

The admin client is the standard library's ``http.client`` on purpose: it imports in a few
milliseconds, and a command that asks a node one question should start in well under a
second (the target for ``jarvis-trio members`` is 1 s including the interpreter).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click

__all__ = [
    "AdminClient",
    "CliError",
    "admin_options",
    "print_table",
]

DEFAULT_TIMEOUT = 5.0
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure the user can act on: printed as one line, exit status 1."""


def _admin_address(value: str | None) -> tuple[str, int]:
    text = value or os.environ.get("JC_ADMIN_ADDR")
    if not text:
        port = os.environ.get("JC_ADMIN_PORT", "").strip()
        if not port:
            raise CliError(
                "no admin endpoint given: pass --admin host:port (or set JC_ADMIN_ADDR, or "
                "JC_ADMIN_PORT for 127.0.0.1)"
            )
        text = f"127.0.0.1:{port}"
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CliError(f"--admin {text!r}: expected host:port, for example 127.0.0.1:8946")
    return host.strip("[]") or "127.0.0.1", int(port_text)


class AdminClient:
    """Requests to one node's admin endpoint; every failure becomes a :class:`CliError`."""

    def __init__(self, address: str | None, token: str | None, timeout: float) -> None:
        self.host, self.port = _admin_address(address)
        self.token = token or os.environ.get("JC_ADMIN_TOKEN") or None
        self.timeout = timeout

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _open(
        self, path: str, body: bytes | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request("GET" if body is None else "POST", path, body=body, headers=headers)
            response = conn.getresponse()
        except ConnectionRefusedError:
            conn.close()
            raise CliError(
                f"cannot reach the admin endpoint at {self.where}: connection refused"
            ) from None
        except TimeoutError:
            conn.close()
            raise CliError(
                f"the admin endpoint at {self.where} did not answer within {self.timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            raise CliError(f"cannot reach the admin endpoint at {self.where}: {error}") from None
        if response.status == 401:
            conn.close()
            hint = "the token was refused" if self.token else "it needs a token"
            raise CliError(
                f"the admin endpoint at {self.where} answered 401 ({hint}): pass --token or "
                "set JC_ADMIN_TOKEN"
            )
        if response.status >= 400 and path != "/readyz":
            text = response.read(2048).decode("utf-8", "replace")
            conn.close()
            raise CliError(f"{self.where}{path} answered {response.status}: {_reason(text)}")
        return conn, response

    def get_json(self, path: str) -> Any:
        """The decoded JSON answer of ``path``."""
        return self._json(path, None)

    def post_json(self, path: str, payload: Any) -> Any:
        """POST ``payload`` as JSON to ``path``; the decoded JSON answer."""
        return self._json(path, json.dumps(payload).encode())

    def _json(self, path: str, request_body: bytes | None) -> Any:
        conn, response = self._open(path, request_body)
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise CliError(f"{self.where}{path}: the answer was cut off ({error})") from None
        finally:
            conn.close()
        try:
            return json.loads(body)
        except ValueError:
            raise CliError(f"{self.where}{path} did not answer JSON") from None

    def get_text(self, path: str) -> str:
        """The text answer of ``path``."""
        conn, response = self._open(path)
        try:
            return response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def stream_lines(self, path: str) -> Iterator[bytes]:
        """The lines of a streamed answer, until the node ends it (no read timeout)."""
        conn, response = self._open(path)
        if conn.sock is not None:
            conn.sock.settimeout(None)
        try:
            while True:
                line = response.readline()
                if not line:
                    return
                yield line
        except (OSError, http.client.HTTPException) as error:
            raise CliError(f"the event stream from {self.where} broke: {error}") from None
        finally:
            conn.close()


def _reason(text: str) -> str:
    """The ``error`` of a JSON error answer, else the answer's text."""
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip()
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, str) else text.strip()


def admin_options(command: F) -> F:
    """``--admin``, ``--token``, ``--timeout`` and ``--format`` for the inspection commands."""
    options = [
        click.option(
            "--admin",
            "admin",
            metavar="HOST:PORT",
            help="the node's admin endpoint [env JC_ADMIN_ADDR, or 127.0.0.1:$JC_ADMIN_PORT]",
        ),
        click.option("--token", metavar="TOKEN", help="admin Bearer token [env JC_ADMIN_TOKEN]"),
        click.option(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="seconds to wait for the node",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["table", "json"]),
            default="table",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell, as ``serf members`` prints them."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
