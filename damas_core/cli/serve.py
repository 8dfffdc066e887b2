"""``damas serve``: the tracker's HTTP API under waitress.

On the first start of a store served with ``--auth jwt`` and no admin user, it creates
``@admin`` with a random password printed once (or the one in
``--admin-password-file``, for scripted set-ups).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import click

from damas_core.backends.base import Patch
from damas_core.elements import now_ms
from damas_core.http import MAX_BODY_SIZE, make_app
from damas_core.http.streams import MAX_STREAMS
from damas_core.operations.changes import DEFAULT_MAX_BYTES
from damas_core.ordering import MISSING
from damas_core.passwords import hash_password

log = logging.getLogger("damas_core.serve")


def admin_users(tracker: Any) -> list[str]:
    """The ids of the users with class ``admin``."""
    return [i for i in tracker.search("class:admin") if i.startswith("@")]


def ensure_admin(tracker: Any, password: str | None = None) -> str | None:
    """Create ``@admin`` if the store has no admin user; returns the password it set
    (random unless given), or ``None`` when an admin already existed or another process
    made one first.

    Safe when several servers start together on one store: the account is created by
    one atomic insert (or, for an ``@admin`` that is not an admin, one guarded patch),
    so exactly one of them sets a password and prints it.
    """
    if admin_users(tracker):
        return None
    password = password or secrets.token_urlsafe(15)
    # Hashed here: the tracker keeps an admin's write of a hash, so a password that
    # looks like a damas-core hex digest is not mistaken for one.
    user = {"_id": "@admin", "class": "admin", "password": hash_password(password)}
    storage = tracker.storage
    if storage.insert_many([{**user, "author": tracker.username, "time": now_ms()}])[0]:
        return password
    existing = storage.get("@admin")
    if existing is None or existing.get("class") == "admin":
        return None  # another process made it (or removed it) meanwhile
    # An "@admin" that is not an admin: make it one, unless someone changed it first.
    expect = {k: existing.get(k, MISSING) for k in ("class", "password")}
    changed = storage.patch_many([Patch("@admin", set=user, expect=expect)])[0]
    return password if changed else None


@click.command(
    epilog="""\b
Examples:
  damas serve                                     ./damas-data on 127.0.0.1:8090
  damas serve --store lmdb:///srv/damas --host 0.0.0.0 --port 80
  damas serve --store memory:// --auth none       local experiments only
  damas serve --admin-password-file /run/secrets/damas-admin
  damas serve --trusted-proxies 127.0.0.1,10.0.0.0/8   behind nginx

GET /healthz answers 200 while the store answers (for load balancers)."""
)
@click.option(
    "--store",
    default="lmdb://./damas-data",
    show_default=True,
    metavar="URL",
    help="The store to serve.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8090,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--auth",
    type=click.Choice(["jwt", "none"]),
    default="jwt",
    show_default=True,
    help="jwt: sign in for a token; none: every request is an anonymous admin.",
)
@click.option(
    "--admin-password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Password for the @admin created on first start (instead of a random one).",
)
@click.option(
    "--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Worker threads."
)
@click.option(
    "--max-streams",
    default=MAX_STREAMS,
    show_default=True,
    type=click.IntRange(1),
    help="Event streams and waiting long-polls open at once (503 beyond).",
)
@click.option(
    "--max-body-size",
    default=MAX_BODY_SIZE,
    show_default=True,
    type=click.IntRange(1),
    help="Largest request body, in bytes (413 beyond).",
)
@click.option(
    "--idle-timeout",
    default=10.0,  # damas_core.http.server.IDLE_TIMEOUT (imported with waitress, later)
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds a connection may take to send a whole request before it is closed.",
)
@click.option(
    "--changes-max-bytes",
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    type=click.IntRange(1024),
    help="Most bytes of JSON in one answer of the change feed (it stops early beyond).",
)
@click.option(
    "--metrics-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A token, alone in a file, that lets Prometheus read GET /metrics (as a Bearer).",
)
@click.option(
    "--token-lifespan",
    default="1d",
    show_default=True,
    help="Default token validity: seconds or a duration like 12h, 7d.",
)
@click.option(
    "--trusted-proxies",
    default="",
    metavar="CIDR,...",
    help="Proxies (addresses or CIDRs) whose X-Forwarded-For names the client that "
    "sign-in limits count against; the right-most address no trusted proxy wrote is "
    "taken. Without it, the direct peer is the client.",
)
def serve(
    store: str,
    host: str,
    port: int,
    auth: str,
    admin_password_file: Path | None,
    threads: int,
    max_streams: int,
    max_body_size: int,
    idle_timeout: float,
    changes_max_bytes: int,
    token_lifespan: str,
    metrics_token_file: Path | None,
    trusted_proxies: str,
) -> None:
    """Serve the tracker's HTTP API (damas-core 2.x routes) with waitress."""
    import damas_core
    from damas_core.errors import DamasError
    from damas_core.http.server import create_server, stop_server

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from damas_core.http.clients import proxies

    try:
        proxies(trusted_proxies)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--trusted-proxies") from None
    try:
        tracker = damas_core.open(store, changes_max_bytes=changes_max_bytes)
    except DamasError as e:
        raise click.ClickException(f"cannot open {store}: {e}") from e
    try:
        if auth == "jwt":
            given = None
            if admin_password_file is not None:
                given = admin_password_file.read_text().strip()
                if not given:
                    raise click.ClickException(f"{admin_password_file} is empty")
            password = ensure_admin(tracker, given)
            if password is not None and given is None:
                click.echo(f"Created the admin user @admin with password: {password}")
                click.echo("It is shown only this once: sign in and change it.")
            elif password is not None:
                click.echo(
                    "Created the admin user @admin with the password from --admin-password-file."
                )
        app = make_app(
            tracker,
            auth=auth,
            max_body_size=max_body_size,
            token_lifespan=token_lifespan,
            max_streams=max_streams,
            metrics_token=_metrics_token(metrics_token_file),
            trusted_proxies=trusted_proxies,
        )
        # waitress refuses bodies over the limit before reading them, in JSON as the API.
        server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            max_body_size=max_body_size,
            idle_timeout=idle_timeout,
            ident="damas",
        )
        click.echo(
            f"damas: serving {store} on http://{host}:{server.effective_port}/ (auth {auth})",
            err=True,
        )
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            stop_server(server)
    finally:
        tracker.close()


def _metrics_token(path: Path | None) -> str | None:
    if path is None:
        return None
    token = path.read_text().strip()
    if len(token) < 16:
        raise click.ClickException(f"{path}: a metrics token has at least 16 characters")
    return token


__all__ = ["ensure_admin", "serve"]
