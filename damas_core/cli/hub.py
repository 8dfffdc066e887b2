"""``damas hub``: run a hub and its storages' agents, make the hub's key.

``damas hub run HUB_VOLUME_ID`` runs, at the hub, the hub volume's agent and one agent
per storage whose ``hub`` is that volume (:mod:`damas_core.sync.hub_run`);
``damas hub key`` makes the hub's key pair and prints the ``authorized_keys`` lines
to install on the storages. See "Hub and storages" in docs/sync.md.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from functools import partial
from pathlib import Path
from typing import Any

import click

from damas_core.cli.notify import make_notifier, smtp_options, smtp_settings
from damas_core.cli.service import (
    fail,
    open_tracker,
    service_options,
    setup_logging,
)
from damas_core.errors import DamasError
from damas_core.sync.state_dir import state_home

#: the hub's private key in its state directory (the public key beside it, ``.pub``)
KEY_NAME = "hub_key"


def default_hub_dir() -> Path:
    """``$XDG_STATE_HOME/damas/hub``, else ``~/.local/state/damas/hub``."""
    return state_home("hub")


_EPILOG = """\b
Examples:
  damas hub key --server https://hub:8090 --credentials /etc/damas/hub.json
  damas hub run vol_hub --server https://hub:8090 --credentials /etc/damas/hub.json
  damas hub run vol_hub --store lmdb:///srv/damas/store --once
"""


@click.group("hub", epilog=_EPILOG)
def hub() -> None:
    """A hub: storages that run nothing but sshd and rsync, driven from here."""


def _connect(ctx: click.Context, store: str | None, server: str | None, credentials: Path | None):
    """``(open_tracker, first tracker, processes)``: each call of ``open_tracker()``
    gives an agent its own connection (a server) or this process's store (embedded);
    ``processes``: whether the storages' agents may run as processes of their own (a
    server, or a store other processes can open)."""
    from damas_core.sync.hub_run import ServerOpener, StoreOpener

    tracker, connection = open_tracker(ctx, store, server, credentials)
    if connection is None:
        shared = bool(getattr(getattr(tracker, "storage", None), "shared", False))
        return StoreOpener(tracker.storage.url, tracker), tracker, shared
    connection.ensure()
    return ServerOpener(connection.where, connection.credentials), tracker, True


_RUN_EPILOG = """\b
Examples:
  damas hub run vol_hub --server https://tracker:8090 --credentials /etc/damas/hub.json
  damas hub run vol_hub --store lmdb:///srv/damas/store --once     one cycle of each, as JSON
  damas hub run vol_hub --server https://tracker:8090 --credentials /etc/damas/hub.json \\
      --smtp smtp://alerts@mail.example.org:587 --smtp-password-file /etc/damas/smtp-pw

\b
Storages without ssh_identity_file are reached with the hub's key (damas hub key).
Exit codes: 0 stopped by SIGTERM/SIGINT, 1 usage, 3 (--once) tracker unreachable,
7 (--once) some files failed, 75 another process runs this hub, 77 credentials
unusable or refused, 78 no such hub volume or an unusable state directory."""


@hub.command("run", epilog=_RUN_EPILOG)
@click.argument("hub_volume_id")
@click.option(
    "--once", is_flag=True, help="Run one cycle of each agent; print the reports as JSON."
)
@click.option("--settle", type=float, default=None, help="Seconds a new file must stay still.")
@click.option("--ssh", "ssh_command", default=None, help="ssh command reaching the storages.")
@service_options(
    "The hub's own directory: its key, each agent's state, the notifier's (default "
    "$XDG_STATE_HOME/damas/hub)."
)
@smtp_options
@click.pass_context
def run(
    ctx: click.Context,
    hub_volume_id: str,
    once: bool,
    settle: float | None,
    ssh_command: str | None,
    credentials: Path | None,
    state_dir: Path | None,
    log_level: str,
    log_file: Path | None,
    server: str | None,
    store: str | None,
    smtp_url: str | None,
    smtp_tls: str,
    smtp_password_file: Path | None,
    sender: str | None,
    smtp_retry: float,
) -> None:
    """Run the hub HUB_VOLUME_ID: its own agent and one agent per storage whose hub
    it is, in parallel, until SIGTERM or Ctrl-C (one cycle of each with --once); with
    --smtp, the notifier too (as damas notify does)."""
    import shlex
    import signal

    from damas_core.client import Unreachable
    from damas_core.errors import NotFound
    from damas_core.sync.hub_run import Hub
    from damas_core.sync.service import EXIT_CONFIG, ServiceError, StateLock
    from damas_core.sync.statefile import StateDirError

    setup_logging(log_level, log_file, threads=True)  # the thread's name: hub:<site>
    log = logging.getLogger("damas_core.sync.hub_run")
    try:
        smtp_settings(smtp_url, smtp_tls, smtp_password_file)  # checked before connecting
    except ValueError as e:
        raise click.UsageError(str(e)) from None

    state = state_dir or default_hub_dir()
    tracker: Any = None
    try:
        try:
            open_tracker_, tracker, processes = _connect(ctx, store, server, credentials)
        except Unreachable as e:
            click.echo(f"damas: {e}", err=True)
            ctx.exit(3)
            return
        hub_vol = tracker.read(hub_volume_id)
        if hub_vol is None or not isinstance(hub_vol.get("url"), str):
            raise ServiceError(f"no hub volume {hub_volume_id!r}", EXIT_CONFIG)
        if hub_vol.get("hub"):
            raise ServiceError(
                f"{hub_volume_id!r} is itself a storage of {hub_vol['hub']!r}: a hub's volume "
                "has no hub",
                EXIT_CONFIG,
            )
        key = state / KEY_NAME
        the_hub = Hub(
            open_tracker_,
            hub_volume_id,
            state_dir=state,
            ssh_command=shlex.split(ssh_command) if ssh_command else None,
            key=str(key) if key.exists() else None,
            settle=settle,
            processes=processes,
            setup=partial(setup_logging, log_level, log_file, threads=True),
        )
        with StateLock(state / hub_volume_id.replace("/", "_")):
            notifier = None
            if smtp_url is not None:
                # its own tracker: its long-poll holds a client for seconds at a time
                opened = open_tracker_()
                try:
                    notifier = make_notifier(
                        opened.tracker, state / "notify", smtp_url=smtp_url, smtp_tls=smtp_tls,
                        smtp_password_file=smtp_password_file, sender=sender,
                        smtp_retry=smtp_retry,
                    )  # fmt: skip
                except StateDirError as e:
                    raise ServiceError(str(e), EXIT_CONFIG) from None
            if once:
                reports = the_hub.run_once()
                if notifier is not None:
                    log.info("notify: %s", json.dumps(notifier.run_once()))
                click.echo(json.dumps(reports, indent=2, ensure_ascii=False))
                if any(r.get("failed") or r.get("error") for r in reports.values()):
                    ctx.exit(7)
                return
            notifying = _NotifierThread(notifier, opened, the_hub) if notifier else None
            previous = {
                sig: signal.signal(sig, lambda *_: the_hub.stop())
                for sig in (signal.SIGTERM, signal.SIGINT)
            }
            try:
                if notifying is not None:
                    notifying.start()
                the_hub.run()
            finally:
                if notifying is not None:
                    notifying.stop()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            if notifying is not None and isinstance(notifying.error, ServiceError):
                raise notifying.error
            ctx.exit(0)
    except ServiceError as e:
        fail(ctx, e, log)
    except (NotFound, DamasError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        if tracker is not None:
            tracker.close()


class _NotifierThread(threading.Thread):
    """The notifier of ``damas hub run --smtp``, in a thread of its own with its own
    tracker; credentials it cannot use stop the hub too (the error is :attr:`error`)."""

    def __init__(self, notifier: Any, opened: Any, the_hub: Any) -> None:
        super().__init__(name="notify", daemon=True)
        self.notifier = notifier
        self.opened = opened
        self.the_hub = the_hub
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        connection = self.opened.connection
        try:
            self.notifier.run(
                self.stopping, renew=connection.renew if connection is not None else None
            )
        except Exception as e:
            logging.getLogger("damas_core.sync.notifier").error("notify: stopped: %s", e)
            self.error = e
            self.the_hub.stop()

    def stop(self) -> None:
        """Stop after the running round (its long-poll ends within a few seconds)."""
        self.stopping.set()
        self.join()
        if self.opened.connection is not None:
            self.opened.tracker.close()


_KEY_EPILOG = """\b
Examples:
  damas hub key --server https://tracker:8090 --credentials /etc/damas/hub.json
  damas hub key --store lmdb:///srv/damas/store --folder /volume1/project

\b
Install one of the printed lines in ~/.ssh/authorized_keys of the storage's account."""


@hub.command("key", epilog=_KEY_EPILOG)
@click.option("--type", "key_type", type=click.Choice(["ed25519", "rsa"]), default="ed25519")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The hub's own directory (default $XDG_STATE_HOME/damas/hub).",
)
@click.option(
    "--folder",
    default="/path/to/project",
    show_default=True,
    help="The project folder on the storages, for the rrsync line.",
)
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file (mode 0600) with a token, or a username and password (with --server).",
)
@click.option("--server", metavar="URL", help="A damas server (an admin's credentials).")
@click.option("--store", metavar="URL", help="A store, e.g. lmdb:///srv/damas/store.")
@click.pass_context
def key(
    ctx: click.Context,
    key_type: str,
    state_dir: Path | None,
    folder: str,
    credentials: Path | None,
    server: str | None,
    store: str | None,
) -> None:
    """Make the hub's key pair (once), publish its public key as
    rsyncGlobalParameters.rsaPublicKey, and print the authorized_keys lines."""
    from damas_core.sync.service import ServiceError
    from damas_core.sync.volumes import set_global_parameters

    state = state_dir or default_hub_dir()
    try:
        _, tracker, _ = _connect(ctx, store, server, credentials)
    except ServiceError as e:
        click.echo(f"damas: {e}", err=True)
        ctx.exit(e.exit_code)
        return
    try:
        public = make_key(state, key_type)
        set_global_parameters(tracker, {"rsaPublicKey": public})
    except (OSError, subprocess.CalledProcessError, DamasError) as e:
        raise click.ClickException(str(e)) from e
    finally:
        tracker.close()
    click.echo(authorized_keys_lines(public, folder))


def make_key(state_dir: Path, key_type: str = "ed25519") -> str:
    """The hub's public key, the pair made first in ``state_dir`` when missing (private
    key mode 0600, the directory 0700)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / KEY_NAME
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "damas-hub", "-f", str(path)],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    os.chmod(path, 0o600)
    return path.with_suffix(".pub").read_text().strip()


def authorized_keys_lines(public: str, folder: str) -> str:
    """The two ways to install the hub's key on a storage, each saying what it allows.

    >>> print(authorized_keys_lines("ssh-ed25519 AAAA damas-hub", "/srv/p"))  # doctest: +ELLIPSIS
    # 1. unrestricted: ...
    ssh-ed25519 AAAA damas-hub
    # 2. rsync only, ...
    command="rrsync /srv/p",restrict ssh-ed25519 AAAA damas-hub
    """
    return (
        "# 1. unrestricted: the hub lists with GNU find (mtimes to the nanosecond, renames by\n"
        "#    inode), reads the capacity (df), applies deletions and renames and keeps both\n"
        "#    copies of a conflict there;\n"
        "#    the volume's url names the project folder: ssh://user@host/path/to/project/\n"
        f"{public}\n"
        "# 2. rsync only, inside the project folder (rrsync, shipped with rsync): the hub\n"
        "#    lists with rsync --list-only (mtimes to the second), no capacity, no deletions,\n"
        "#    renames or conflict copies applied by the engine; the url's path is below that\n"
        "#    folder: ssh://user@host/\n"
        f'command="rrsync {folder}",restrict {public}'
    )


__all__ = ["KEY_NAME", "authorized_keys_lines", "default_hub_dir", "hub", "make_key"]
