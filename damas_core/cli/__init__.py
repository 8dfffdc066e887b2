"""The ``damas`` command line.

Commands live in modules of this package and are imported only when used, so
``damas --help`` stays fast and a missing optional driver only affects its command:

- ``data``: ``copy``, ``export``, ``import`` (moving elements between stores)
- ``ops``: the tracker operations (``create``, ``read``, ... ``signin``, ``signout``),
  and ``untrack`` (stop tracking files, keeping them)
- ``serve``: ``serve`` (the HTTP server)
- ``sync``: ``sync`` (agents and the status matrix)
- ``hub``: ``hub run``, ``hub key`` (a hub driving storages over ssh)
- ``changes``: ``changes`` (the change feed, one JSON line per change)
- ``admin``: ``volume``, ``params``, ``user``, ``conflicts`` (the administrator's commands)
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# command name -> (module in damas_core.cli, attribute)
COMMANDS: dict[str, tuple[str, str]] = {
    "copy": ("data", "copy"),
    "export": ("data", "export"),
    "import": ("data", "import_"),
    "serve": ("serve", "serve"),
    "sync": ("sync", "sync"),
    "hub": ("hub", "hub"),
    "create": ("ops", "create"),
    "read": ("ops", "read"),
    "update": ("ops", "update"),
    "upsert": ("ops", "upsert"),
    "delete": ("ops", "delete"),
    "untrack": ("ops", "untrack"),
    "graph": ("ops", "graph"),
    "search": ("ops", "search"),
    "search_one": ("ops", "search_one"),
    "search_mongo": ("ops", "search_mongo"),
    "publish": ("ops", "publish"),
    "lock": ("ops", "lock"),
    "unlock": ("ops", "unlock"),
    "comment": ("ops", "comment"),
    "version": ("ops", "version"),
    "changes": ("changes", "changes"),
    "volume": ("admin", "volume"),
    "params": ("admin", "params"),
    "user": ("admin", "user"),
    "conflicts": ("admin", "conflicts"),
    "signin": ("ops", "signin"),
    "signout": ("ops", "signout"),
    "verify": ("ops", "verify"),
    "notify": ("notify", "notify"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use from :data:`COMMANDS`.

    Usage errors exit with status 1 (click's default is 2), as damas-core's shell
    command did.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("standalone_mode", True) is False:
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as e:
            e.show()
            sys.exit(1)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name]
        try:
            module = importlib.import_module(f"damas_core.cli.{module_name}")
        except ModuleNotFoundError as e:
            if e.name != f"damas_core.cli.{module_name}":
                raise
            return None
        return getattr(module, attr)


_EPILOG = """\b
Examples:
  damas serve                                   serve ./damas-data on port 8090
  damas -s http://localhost:8090 signin alice   sign in (token and server are saved)
  damas create '{"_id": "/shots/a.exr", "status": "wip"}'
  damas read /shots/a.exr
  damas -l search 'status:wip'                  one id per line
  damas search 'status:wip' | damas read -      read what a search found
  damas --store lmdb://./damas-data read /a     no server: work on a store

\b
Exit codes: 0 ok, 1 usage, 3 server unreachable, 7 some items failed (207),
40/41/43/44/49/50 for HTTP 400/401/403/404/409/500, 60 any other error.
Environment: DAMAS_SERVER (server URL), DAMAS_TOKEN (token to send)."""


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_EPILOG,
)
@click.option(
    "-s",
    "--server",
    envvar="DAMAS_SERVER",
    metavar="URL",
    help="Server URL (default $DAMAS_SERVER, else the one signin saved, else http://localhost:8090).",
)
@click.option("--store", metavar="URL", help="Work on this store directly, without a server.")
@click.option(
    "--token",
    "--apikey",
    "token",
    envvar="DAMAS_TOKEN",
    metavar="TOKEN",
    help="Token to send (default: $DAMAS_TOKEN, then the one saved by signin).",
)
@click.option("-l", "--lines", is_flag=True, help="Print one result per line.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; only the exit code tells.")
@click.option("-v", "--verbose", is_flag=True, help="Print each request on standard error.")
@click.pass_context
def main(ctx: click.Context, **options: object) -> None:
    """damas: track the files of a project across sites."""
    ctx.obj = {k: v for k, v in options.items() if v not in (None, False)}
