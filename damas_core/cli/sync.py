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
from pathlib import Path
from typing import Any

import click

from damas_core.cli.service import fail, open_tracker, service_options, setup_logging
from damas_core.errors import BadRequest, DamasError


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


_AGENT_EPILOG = """\b
Examples:
  damas sync agent vol_paris --store lmdb:///srv/damas/store
  damas sync agent vol_paris --server https://tracker:8090 --credentials ~/.config/damas/agent.json
  damas sync agent vol_paris --once --settle 0          one cycle, its report as JSON
  damas sync agent vol_paris --log-level DEBUG --log-file /var/log/damas/paris.log

\b
The credentials file is JSON, mode 0600: {"username": "agent", "password": "..."},
or {"token": "..."}, or both: with a password the agent signs in again whenever
its token is refused (expired, revoked). Without --credentials the token saved by
`damas signin` is used. See "Running agents as services" in docs/sync.md.

\b
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 usage, 3 (--once) tracker unreachable,
7 (--once) some files failed, 75 another agent holds the volume, 77 credentials
unusable or refused, 78 no such volume, invalid volume or unusable state directory.
The tracker unreachable, a 5xx or a timeout never stop a running agent: it waits
(doubling up to --backoff-max seconds) and tries again."""


@sync.command("agent", epilog=_AGENT_EPILOG)
@click.argument("volume_id")
@click.option("--once", is_flag=True, help="Run one cycle and print its report as JSON.")
@click.option("--settle", type=float, default=None, help="Seconds a new file must stay still.")
@click.option(
    "--ssh", "ssh_command", default=None, help="ssh command for ssh:// volumes, e.g. 'ssh -i key'."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The folder where the volume's files are on this machine (default: its url's "
    "path; needed for an ssh:// volume of another host mounted here).",
)
@click.option(
    "--walker",
    type=click.Choice(["auto", "find", "scandir"]),
    default="auto",
    show_default=True,
    help="How the volume is listed: GNU find beside the agent, or os.scandir.",
)
@service_options(
    "The agent's own directory, locked while it runs (default "
    "$XDG_STATE_HOME/damas/agents/VOLUME_ID, else ~/.local/state/damas/agents/VOLUME_ID)."
)
@click.option(
    "--backoff-max",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    help="Longest wait, in seconds, between attempts while the tracker fails.",
)
@click.pass_context
def agent(
    ctx: click.Context,
    volume_id: str,
    once: bool,
    settle: float | None,
    ssh_command: str | None,
    root: Path | None,
    walker: str,
    credentials: Path | None,
    state_dir: Path | None,
    log_level: str,
    log_file: Path | None,
    backoff_max: float,
    store: str | None,
    server: str | None,
) -> None:
    """Run the sync agent of VOLUME_ID: scan, publish, receive and emit files, in
    cycles until SIGTERM or Ctrl-C (one cycle with --once)."""
    import shlex

    from damas_core.sync import Agent, activity
    from damas_core.sync.service import (
        EXIT_CONFIG,
        Backoff,
        Service,
        ServiceError,
        StateLock,
        default_state_dir,
        log_failures,
    )
    from damas_core.sync.site import local_site
    from damas_core.sync.volumes import volume

    setup_logging(log_level, log_file)
    log = logging.getLogger("damas_core.sync.agent")

    try:
        tracker, connection = open_tracker(ctx, store, server, credentials)
    except ServiceError as e:
        fail(ctx, e, log)
        return

    state = state_dir or default_state_dir(volume_id)
    # before anything is locked or written: a volume this agent may not run here (a
    # tracker that does not answer yet is the service's to wait for; it checks again)
    try:
        if connection is not None:
            connection.ensure()
        vol = volume(tracker, volume_id)
    except ServiceError as e:  # credentials refused: nothing to wait for
        tracker.close()
        fail(ctx, e, log)
        return
    except Exception:
        vol = None
    try:
        if vol is not None:
            local_site(vol, root=str(root) if root else None, walker=walker)
    except BadRequest as e:
        tracker.close()
        fail(ctx, ServiceError(str(e), EXIT_CONFIG), log)
        return

    def make_agent(t: Any) -> Agent:
        return Agent(
            t,
            volume_id,
            settle=settle,
            ssh_command=shlex.split(ssh_command) if ssh_command else None,
            root=str(root) if root is not None else None,
            walker=walker,
            state_dir=str(state),
        )

    try:
        if once:
            from damas_core.client import Unreachable

            with StateLock(state):
                try:
                    if connection is not None:
                        connection.ensure()
                    a = make_agent(tracker)
                    report = a.run_once()
                    # as the long-running agent does: errors, brakes, conflicts logged
                    activity.after_cycle(tracker, volume_id, report, a.view.files, state)
                except Unreachable as e:
                    click.echo(f"damas: {e}", err=True)
                    ctx.exit(3)
                    return
                except (DamasError, ValueError) as e:
                    raise click.ClickException(str(e)) from e
            log_failures(report)  # the report printed says the rest
            click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
            if report.failed:
                ctx.exit(7)
        else:
            service = Service(
                tracker,
                volume_id,
                make_agent,
                state_dir=state,
                connection=connection,
                backoff=Backoff(cap=backoff_max),
            )
            ctx.exit(service.run())
    except ServiceError as e:
        fail(ctx, e, log)
    finally:
        tracker.close()


@sync.command(
    "status",
    epilog="""\b
Examples:
  damas sync status --store lmdb:///srv/damas/store
  damas sync status --prefix /seq06/ --state error       what failed under /seq06/
  damas sync status --site paris --site tokyo --limit 50
  damas sync status --json /shots/a.exr               one file, as JSON""",
)
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
        tracker.close()  # a Tracker or a Client: both close
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        Console().print(render(data, limit=limit))


@sync.command(
    "log",
    epilog="""\b
Examples:
  damas sync log --store lmdb:///srv/damas/store         every site's events
  damas sync log vol_paris --since 2h                     the last two hours of paris
  damas sync log paris --since 2026-01-31 --json          by site name, as JSON lines""",
)
@click.argument("volumes", nargs=-1)
@click.option("--since", metavar="WHEN", help="Only events since WHEN: 30m, 2h, 7d or an ISO date.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many events (the latest).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@_connection_options
@click.pass_context
def log_(
    ctx: click.Context,
    volumes: tuple[str, ...],
    since: str | None,
    limit: int | None,
    as_json: bool,
    store: str | None,
    server: str | None,
) -> None:
    """Show the activity log of VOLUME… (ids or site names; every volume without one):
    agents down and back, storages unreachable, files failing, brakes, conflicts,
    switches turned off and on."""
    from damas_core.sync.activity import log as activity_log
    from damas_core.sync.activity import parse_since
    from damas_core.sync.volumes import volumes as all_volumes

    try:
        start = parse_since(since) if since else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None
    tracker = _open(ctx, store, server)
    try:
        vols = all_volumes(tracker)
        names = {v["_id"]: v.get("name", v["_id"]) for v in vols}
        by_name = {v.get("name"): v["_id"] for v in vols}
        ids = list(names)  # every volume's (one indexed search each)
        if volumes:
            ids = []
            for given in volumes:
                if given in names:
                    ids.append(given)
                elif given in by_name:
                    ids.append(by_name[given])
                else:
                    raise click.ClickException(f"sync log: no volume or site {given!r}")
        events = activity_log(tracker, ids, since=start, limit=limit, newest_first=True)[::-1]
    except DamasError as e:
        raise click.ClickException(str(e)) from e
    finally:
        tracker.close()
    for e in events:
        if as_json:
            click.echo(json.dumps(e, ensure_ascii=False, sort_keys=True))
        else:
            click.echo(log_line(e, names.get(e["#parent"], e["#parent"])))


def log_line(event: dict[str, Any], site: str) -> str:
    """One event as a line of text.

    >>> log_line({"time": 0, "event": "brake", "detail": {"n": 1}, "author": "agent"}, "paris")
    '1970-01-01 00:00:00Z  paris  brake  {"n": 1}  (agent)'
    """
    import time as _time

    when = event.get("time")
    stamp = (
        _time.strftime("%Y-%m-%d %H:%M:%SZ", _time.gmtime(when / 1000))
        if isinstance(when, int | float)
        else "?"
    )
    detail = json.dumps(event.get("detail") or {}, ensure_ascii=False, sort_keys=True)
    who = f"  ({event['author']})" if event.get("author") else ""
    return f"{stamp}  {site}  {event.get('event')}  {detail}{who}"
