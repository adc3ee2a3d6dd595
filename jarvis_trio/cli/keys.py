"""``jarvis-trio keys``: a node's cluster keyring through its admin endpoint (as ``serf keys``).

``list`` shows fingerprints, never keys; ``install``, ``use`` and ``remove`` change one node's
keyring at run time. A rotation runs each step on every node before the next step (see the
README's "Rotating the key"). ``use`` and ``remove`` also take a key's fingerprint, so the key
being retired need not be typed again; ``-`` as KEY reads the key from standard input, keeping
it out of the shell history and the process list.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._common import AdminClient, CliError, admin_options, print_table

__all__ = ["keys"]

_DONE = {"install": "installed", "use": "made primary", "remove": "removed"}


def _key_text(key: str) -> str:
    if key != "-":
        return key
    text = sys.stdin.readline().strip()
    if not text:
        raise CliError("KEY '-': standard input gave no key")
    return text


def _change(
    action: str, key: str, admin: str | None, token: str | None, timeout: float, fmt: str
) -> None:
    client = AdminClient(admin, token, timeout)
    answer: dict[str, Any] = client.post_json(f"/keys/{action}", {"key": _key_text(key)})
    if fmt == "json":
        click.echo(json.dumps(answer, indent=2))
        return
    named, node = answer["fingerprint"], answer["node"]
    if answer["changed"]:
        line = f"{node}: key {named} {_DONE[action]}"
    else:
        line = f"{node}: key {named} was already {_DONE[action]}"
    click.echo(f"{line} ({len(answer['keys'])} key(s), primary {answer['primary']})")


@click.group()
def keys() -> None:
    """Manage a node's cluster keyring: every installed key verifies, the primary signs.

    Rotate a cluster's key without a restart by running each step on every node before the
    next: install the new key, use it, remove the old one.

    \b
    Example:
      jarvis-trio keys install the-next-cluster-secret-of-32-chars --admin 127.0.0.1:8946
      jarvis-trio keys use the-next-cluster-secret-of-32-chars --admin 127.0.0.1:8946
      jarvis-trio keys remove 1f9137939a822081 --admin 127.0.0.1:8946
      jarvis-trio keys list --admin 127.0.0.1:8946
    """


@keys.command(name="list")
@admin_options
def list_keys(admin: str | None, token: str | None, timeout: float, fmt: str) -> None:
    """List the installed keys as fingerprints, primary first, with the number of datagrams
    each one verified (an old key at a standstill is no longer used by any node).

    \b
    Example:
      jarvis-trio keys list --admin 127.0.0.1:8946 --token "$JC_ADMIN_TOKEN"
    """
    answer = AdminClient(admin, token, timeout).get_json("/keys")
    if fmt == "json":
        click.echo(json.dumps(answer, indent=2))
        return
    print_table(
        ("Key", "Primary", "Verified"),
        [(k["fingerprint"], "yes" if k["primary"] else "", k["verified"]) for k in answer["keys"]],
    )


def _change_command(action: str, help_text: str) -> click.Command:
    """``keys ACTION KEY`` with the admin options; ``help_text`` ends with an example."""

    def command(key: str, admin: str | None, token: str | None, timeout: float, fmt: str) -> None:
        _change(action, key, admin, token, timeout, fmt)

    command.__doc__ = help_text
    return keys.command(name=action)(click.argument("key")(admin_options(command)))


install = _change_command(
    "install",
    """Install KEY: the node accepts datagrams sealed with it, and still signs with its
    primary key.

    \b
    Example:
      jarvis-trio keys install the-next-cluster-secret-of-32-chars --admin 127.0.0.1:8946
    """,
)
use = _change_command(
    "use",
    """Make KEY (an installed key, or its fingerprint) the primary: the node signs with it.

    \b
    Example:
      jarvis-trio keys use the-next-cluster-secret-of-32-chars --admin 127.0.0.1:8946
    """,
)
remove = _change_command(
    "remove",
    """Remove KEY (or the key with this fingerprint): datagrams sealed with it are refused.
    The primary key cannot be removed.

    \b
    Example:
      jarvis-trio keys remove 1f9137939a822081 --admin 127.0.0.1:8946
    """,
)
