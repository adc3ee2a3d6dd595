"""The ``jarvis-trio`` command line (also ``python -m jarvis_trio``).

One module per command group, imported only when one of its commands runs, so that a quick
command such as ``jarvis-trio members`` never imports the runtime (Trio, ZeroMQ, Redis)::

    run.py       jarvis-trio run pkg.module:Class ...   a node with those agents
    inspect.py   members, agents, stats, monitor        through a node's admin endpoint
    send.py      request, notify                        as a short-lived client node
    dlq.py       dlq list / show / replay / purge       dead letters, straight from Redis
    keys.py      keys list / install / use / remove     a node's keyring, through its admin
    bench.py     bench                                  the installed benchmarks

Adding a command: write ``jarvis_trio/cli/<group>.py`` with a ``click.command`` (give its
help text an ``Example:`` paragraph), add one line ``"<name>": "<group>:<function>"`` to
:data:`COMMANDS` (and, for a new module, one branch to :func:`_command_module`: imports are
spelled out so that tools see them), and a test that runs it as a subprocess. Fail with
:class:`~jarvis_trio.cli._common.CliError`: :func:`main` turns every failure into one line on
stderr and a non-zero exit status.

Built on click rather than typer: click is what typer wraps, imports in a few tens of
milliseconds, and its lazy group needs twenty lines; typer adds a layer (and, by default,
rich) for type-hint parsing these few commands do not need.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

import click

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, str] = {
    "run": "run:run",
    "members": "inspect:members",
    "agents": "inspect:agents",
    "stats": "inspect:stats",
    "monitor": "inspect:monitor",
    "request": "send:request",
    "notify": "send:notify",
    "dlq": "dlq:dlq",
    "keys": "keys:keys",
    "bench": "bench:bench",
}
"""command name -> ``module:function`` inside this package."""


class _LazyGroup(click.Group):
    """A group whose commands are imported when used (``--help`` imports them all)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command: click.Command = getattr(_command_module(module_name), attribute)
        return command


def _command_module(name: str) -> ModuleType:
    """The module of a command group, imported when one of its commands is used."""
    if name == "run":
        from . import run

        return run
    if name == "inspect":
        from . import inspect

        return inspect
    if name == "send":
        from . import send

        return send
    if name == "dlq":
        from . import dlq

        return dlq
    if name == "keys":
        from . import keys

        return keys
    if name == "bench":
        from . import bench

        return bench
    raise click.UsageError(f"no command module {name!r}")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jarvis_trio", prog_name="jarvis-trio")
def cli() -> None:
    """Run and operate a jarvis_trio cluster.

    \b
    Example:
      jarvis-trio run examples.agents:Echo --port 7946 --admin-port 8946
      jarvis-trio members --admin 127.0.0.1:8946
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: every failure ends as one line on stderr and a non-zero exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args, prog_name="jarvis-trio", standalone_mode=False)
    except click.ClickException as error:
        message = " ".join(error.format_message().split())
        click.echo(f"jarvis-trio: error: {message}", err=True)
        sys.exit(error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("jarvis-trio: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
