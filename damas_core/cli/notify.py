"""``damas notify``: mail each site's events (see :mod:`damas_core.sync.notifier`)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

from damas_core.cli.service import fail, open_tracker, service_options, setup_logging
from damas_core.sync.state_dir import state_home

_EPILOG = """\b
Examples:
  damas notify --server https://tracker:8090 --credentials /etc/damas/notify.json \\
      --smtp smtp://alerts@mail.example.org:587 --smtp-password-file /etc/damas/smtp-pw
  damas notify --store lmdb:///srv/damas/store --smtp smtp://localhost:25 --smtp-tls none

\b
Who is mailed: each volume's notifiedEmails and rsyncGlobalParameters.notifiedEmails
(comma-separated addresses, or a list). At most one mail per volume per notifyInterval
seconds (default 300): the events in between go out as one digest. The state directory
(default $XDG_STATE_HOME/damas/notify) keeps the feed position and the mails not yet
sent: a restart neither loses nor repeats one. See docs/operations.md.

\b
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 usage, 77 credentials unusable or refused,
78 unusable state directory."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/damas/notify``, else ``~/.local/state/damas/notify``."""
    return state_home("notify")


def smtp_options(fn: Any) -> Any:
    """The mail options of ``damas notify`` (``--smtp``, ``--smtp-tls``,
    ``--smtp-password-file``, ``--from``, ``--smtp-retry``), for a command that embeds a
    notifier (``damas hub run``): hand them to :func:`make_notifier`."""
    for option in reversed(
        [
            click.option("--smtp", "smtp_url", metavar="URL", help="smtp://[user@]host:port"),
            click.option(
                "--smtp-tls",
                type=click.Choice(["starttls", "tls", "none"]),
                default="starttls",
                show_default=True,
                help="STARTTLS, implicit TLS (port 465), or none (a relay on this machine).",
            ),
            click.option(
                "--smtp-password-file",
                type=click.Path(dir_okay=False, path_type=Path),
                help="The SMTP user's password, alone in a file.",
            ),
            click.option("--from", "sender", metavar="ADDR", help="The From address."),
            click.option(
                "--smtp-retry",
                type=click.FloatRange(min=0.1),
                default=10.0,
                show_default=True,
                help="Seconds before a failed mail is tried again (doubling, up to 10 min).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.command("notify", epilog=_EPILOG)
@service_options(
    "Where the notifier keeps its state, made mode 0700 (default $XDG_STATE_HOME/damas/notify)."
)
@smtp_options
@click.option(
    "--every",
    type=click.FloatRange(min=0.1, max=60),
    default=5.0,
    show_default=True,
    help="Seconds a round waits on the feed: how late a dead agent is noticed at most.",
)
@click.option("--once", is_flag=True, help="One round, its counts as JSON.")
@click.pass_context
def notify(
    ctx: click.Context,
    server: str | None,
    store: str | None,
    credentials: Path | None,
    smtp_url: str | None,
    smtp_tls: str,
    smtp_password_file: Path | None,
    sender: str | None,
    state_dir: Path | None,
    every: float,
    smtp_retry: float,
    once: bool,
    log_level: str,
    log_file: Path | None,
) -> None:
    """Follow the tracker, record agents that die or come back, and mail every site's
    events to its notifiedEmails."""
    import json

    from damas_core.sync.service import EXIT_CONFIG, ServiceError
    from damas_core.sync.statefile import StateDirError

    setup_logging(log_level, log_file)
    log = logging.getLogger("damas_core.sync.notifier")
    try:
        smtp_settings(smtp_url, smtp_tls, smtp_password_file)  # checked before connecting
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        tracker, connection = open_tracker(ctx, store, server, credentials)
        if connection is not None:
            connection.ensure()
    except ServiceError as e:
        fail(ctx, e)
        return
    notifier = make_notifier(
        tracker, state_dir or default_state_dir(), smtp_url=smtp_url, smtp_tls=smtp_tls,
        smtp_password_file=smtp_password_file, sender=sender, smtp_retry=smtp_retry,
    )  # fmt: skip
    stop = threading.Event()
    try:
        if once:
            click.echo(json.dumps(notifier.run_once()))
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        log.info("notify: following %s", server or store)
        notifier.run(stop, every, renew=connection.renew if connection is not None else None)
        log.info("notify: stopped")
    except StateDirError as e:
        click.echo(f"damas: {e}", err=True)
        ctx.exit(EXIT_CONFIG)
    except ServiceError as e:
        fail(ctx, e)
    finally:
        tracker.close()


def make_notifier(
    tracker: Any,
    state_dir: Path,
    *,
    smtp_url: str | None,
    smtp_tls: str = "starttls",
    smtp_password_file: Path | None = None,
    sender: str | None = None,
    smtp_retry: float = 10.0,
) -> Any:
    """A :class:`~damas_core.sync.notifier.Notifier` from the options of
    :func:`smtp_options` (``click.UsageError`` for bad ones)."""
    from damas_core.sync.notifier import Notifier

    try:
        smtp = smtp_settings(smtp_url, smtp_tls, smtp_password_file)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return Notifier(
        tracker,
        state_dir,
        send=smtp.send if smtp is not None else None,
        sender=sender,
        retry=smtp_retry,
    )


def smtp_settings(url: str | None, tls: str, password_file: Path | None) -> Any:
    """The :class:`~damas_core.sync.notifier.Smtp` of the command line's options
    (``None`` without ``--smtp``: events are recorded, nothing is mailed)."""
    from damas_core.sync.notifier import Smtp

    if url is None:
        if password_file is not None:
            raise ValueError("--smtp-password-file goes with --smtp")
        return None
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().strip("\r\n")
        except OSError as e:
            raise ValueError(f"--smtp-password-file {password_file}: {e.strerror}") from None
    return Smtp.parse(url, tls=tls, password=password)
