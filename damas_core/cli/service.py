"""What the long-running commands share: ``damas sync agent``, ``damas hub run`` and
``damas notify``.

:func:`service_options` declares their common options (``--credentials``,
``--state-dir``, ``--log-level``, ``--log-file``, ``--server``, ``--store``);
:func:`setup_logging` sets up their log; :func:`open_tracker` opens the store or
the server connection they work with, after the same checks.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

#: the log format of a service; with ``threads``, the thread's name follows the level
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
THREAD_LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"


def service_options(state_dir_help: str) -> Callable[[Any], Any]:
    """The options every service command takes, ``--state-dir`` described by
    ``state_dir_help`` (what the directory holds, its default).

    >>> @click.command()
    ... @service_options("Where it keeps its state.")
    ... def cmd(**kw): print(sorted(kw))
    >>> cmd([], standalone_mode=False)
    ['credentials', 'log_file', 'log_level', 'server', 'state_dir', 'store']
    """
    options = [
        click.option(
            "--credentials",
            type=click.Path(dir_okay=False, path_type=Path),
            help="JSON file (mode 0600) with a token, or a username and password (with --server).",
        ),
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help=state_dir_help,
        ),
        click.option(
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
            default="INFO",
            show_default=True,
            help="INFO: what the service does; WARNING: failures only.",
        ),
        click.option(
            "--log-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Log to this file instead of standard error.",
        ),
        click.option("--server", metavar="URL", help="A damas server (an admin's credentials)."),
        click.option("--store", metavar="URL", help="A store, e.g. lmdb:///srv/damas/store."),
    ]

    def decorate(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def setup_logging(level: str, log_file: Path | None, *, threads: bool = False) -> None:
    """Log at ``level`` to ``log_file`` (reopened after logrotate moves it), else to
    standard error; ``threads``: each line names its thread (a hub's ``hub:<site>``)."""
    handler: logging.Handler
    if log_file is not None:
        from logging.handlers import WatchedFileHandler

        handler = WatchedFileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(THREAD_LOG_FORMAT if threads else LOG_FORMAT))
    # a process of its own: the root logger has no handler yet (a host that set up
    # logging, such as a test runner calling the command in-process, keeps its own)
    logging.basicConfig(level=level.upper(), handlers=[handler])


def fail(ctx: click.Context, error: Any, log: logging.Logger | None = None) -> None:
    """End the command on a :class:`~damas_core.sync.service.ServiceError`: logged (to
    the log file when there is one), said on standard error, its exit code."""
    if log is not None:
        log.error("%s", error)
    click.echo(f"damas: {error}", err=True)
    ctx.exit(error.exit_code)


def open_tracker(
    ctx: click.Context, store: str | None, server: str | None, credentials: Path | None
) -> tuple[Any, Any]:
    """``(tracker, connection)``: the store opened (``connection`` is ``None``), or a
    :class:`~damas_core.sync.credentials.Connection` to the server (not signed in yet:
    ``connection.ensure()``) and its client. ``--store``/``--server`` default to the
    ``damas`` group's; ``credentials`` default to the token saved by ``damas signin``.

    Raises ``click.UsageError`` (no store nor server, credentials with a store) or
    :class:`~damas_core.sync.service.ServiceError` (credentials missing or unusable,
    exit 77).
    """
    from damas_core.sync.service import EXIT_CREDENTIALS, Connection, Credentials, ServiceError

    parent = ctx.find_root().obj or {}
    store = store or (None if server else parent.get("store"))
    server = server or parent.get("server")
    if store and credentials:
        raise click.UsageError("--credentials is for --server; a store needs none")
    if store:
        import damas_core

        return damas_core.open(store), None
    if not server:
        raise click.UsageError("give --store URL (a store) or --server URL (a damas server)")
    if credentials is not None:
        creds = Credentials.load(credentials)
    else:
        from damas_core.cli.ops import load_token

        token = parent.get("token") or load_token(server)
        if not token:
            raise ServiceError(
                f"no credentials for {server}: give --credentials FILE, or sign in first "
                "(damas signin)",
                EXIT_CREDENTIALS,
            )
        creds = Credentials(token=token)
    connection = Connection(server, creds)
    return connection.client, connection


__all__ = ["fail", "open_tracker", "service_options", "setup_logging"]
