"""``damas sync``: run a site's agent, show where every file stands.

``damas sync agent VOLUME_ID [--once]`` runs the agent of one volume (until SIGTERM or
Ctrl-C, or one cycle with ``--once``); ``damas sync status [--json]`` prints the
files x sites states (filtered with ``--prefix``, ``--state``, ``--site``), the
completion per site and the sites panel, from :mod:`damas_core.sync.status` as the
dashboard does. Both work on a store directly (``--store URL``) or through a
server (``--server URL``, signed in as an admin: the agent writes control keys).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from damas_core.errors import DamasError


def _open(ctx: click.Context, store: str | None, server: str | None) -> Any:
    parent = ctx.find_root().obj or {}
    store = store or (None if server else parent.get("store"))
    server = server or parent.get("server")
    if store:
        import damas_core

        return damas_core.open(store)
    if not server:
        raise click.UsageError("give --store URL (a store) or --server URL (a damas server)")
    from damas_core.cli.ops import load_token
    from damas_core.client import connect

    return connect(server, parent.get("token") or load_token(server))


def _connection_options(fn: Any) -> Any:
    fn = click.option(
        "--server", metavar="URL", help="A damas server (sign in as an admin first)."
    )(fn)
    fn = click.option("--store", metavar="URL", help="A store, e.g. lmdb:///srv/damas/store.")(fn)
    return fn


@click.group("sync")
def sync() -> None:
    """Sync agents and the files x sites status."""


@sync.command("agent")
@click.argument("volume_id")
@click.option("--once", is_flag=True, help="Run one cycle and print its report as JSON.")
@click.option("--settle", type=float, default=None, help="Seconds a new file must stay still.")
@click.option(
    "--ssh", "ssh_command", default=None, help="ssh command for ssh:// volumes, e.g. 'ssh -i key'."
)
@click.option(
    "--walker",
    type=click.Choice(["auto", "find", "scandir"]),
    default="auto",
    show_default=True,
    help="How the volume is listed: GNU find beside the agent, or os.scandir.",
)
@_connection_options
@click.pass_context
def agent(
    ctx: click.Context,
    volume_id: str,
    once: bool,
    settle: float | None,
    ssh_command: str | None,
    walker: str,
    store: str | None,
    server: str | None,
) -> None:
    """Run the sync agent of VOLUME_ID: scan, publish, receive and emit files."""
    import shlex

    from damas_core.sync import Agent

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    tracker = _open(ctx, store, server)
    try:
        a = Agent(
            tracker,
            volume_id,
            settle=settle,
            ssh_command=shlex.split(ssh_command) if ssh_command else None,
            walker=walker,
        )
        if once:
            report = a.run_once()
            click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
            if report.failed:
                sys.exit(7)
        else:
            a.run()
    except (DamasError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        close = getattr(tracker, "close", None)
        if close:
            close()


@sync.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--prefix", default="", metavar="FOLDER", help="Only files under FOLDER, e.g. /seq06/."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["ok", "outdated", "error", "queued", "waiting", "conflict", "unwanted"]),
    help="Only files in this state at a shown site (repeatable).",
)
@click.option(
    "--site", "site_names", multiple=True, metavar="NAME", help="Only these sites (repeatable)."
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=200, show_default=True,
    help="At most this many file rows in the table (0: none; completion counts every file).",
)  # fmt: skip
@click.argument("ids", nargs=-1)
@_connection_options
@click.pass_context
def status(
    ctx: click.Context,
    as_json: bool,
    prefix: str,
    states: tuple[str, ...],
    site_names: tuple[str, ...],
    limit: int,
    ids: tuple[str, ...],
    store: str | None,
    server: str | None,
) -> None:
    """Show each file's state at each site, the completion per site and the sites' health.

    States: ok, outdated, error, queued, waiting (with the reason), conflict, unwanted.
    """
    from damas_core.sync.status import render
    from damas_core.sync.status import status as sync_status

    tracker = _open(ctx, store, server)
    try:
        data = sync_status(
            tracker, list(ids) or None, prefix=prefix, states=states, sites=site_names
        )
    except (DamasError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        close = getattr(tracker, "close", None)
        if close:
            close()
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        Console().print(render(data, limit=limit))
