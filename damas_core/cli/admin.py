"""The administrator's commands: ``damas volume``, ``params``, ``user``, ``conflicts``.

Each works on a store (``--store URL``) or against a server (``-s URL``, signed in as
an admin for writes), through the same :class:`~damas_core.cli.ops.Runner` as the
tracker operations, so the output (JSON; ``-l`` one item per line) and the exit codes
are theirs. What they write is validated first: volumes with
:func:`damas_core.sync.volumes.check_volume`, the global parameters with their schema,
users with ``schemas/user.json``. Who may write what is the tracker's rule.

Keys are given as ``KEY=VALUE`` words (the value is read as JSON when it is JSON,
else as a string; ``KEY=null`` removes the key) or as one JSON object. Passwords are
never command-line arguments: they are asked for (hidden, twice) on a terminal, else
read from the first line of standard input, or of ``--password-file``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from damas_core.cli.ops import Runner, _common, _guard
from damas_core.errors import BadRequest, NotFound
from damas_core.http.handlers import outcome
from damas_core.passwords import hash_password, is_legacy

# -- arguments ------------------------------------------------------------------------------


def key_values(words: tuple[str, ...], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` words, or one JSON object, as a dict.

    >>> key_values(("enableEmission=false", "rsync_args=-z --bwlimit 500"), "keys")
    {'enableEmission': False, 'rsync_args': '-z --bwlimit 500'}
    >>> key_values(('{"sleepBetweenScans": 30}',), "keys")
    {'sleepBetweenScans': 30}
    """
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        try:
            value = orjson.loads(words[0])
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"{what}: malformed JSON: {e}") from None
        if not isinstance(value, dict):
            raise BadRequest(f"{what}: give a JSON object")
        return value
    out: dict[str, Any] = {}
    for word in words:
        key, eq, text = word.partition("=")
        if not eq or not key:
            raise BadRequest(f"{what}: {word!r} is not KEY=VALUE (or give one JSON object)")
        try:
            out[key] = orjson.loads(text)
        except orjson.JSONDecodeError:
            out[key] = text
    return out


def read_password(password_file: Path | None, *, confirm: bool = True) -> str:
    """A password from ``password_file`` (``-``: standard input), else asked for
    (hidden) on a terminal, else the first line of standard input."""
    if password_file is not None and str(password_file) != "-":
        text = password_file.read_text().splitlines()
        password = text[0] if text else ""
    elif password_file is None and sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, confirmation_prompt=confirm, err=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("the password is empty")
    return password


def _user_id(name: str) -> str:
    return name if name.startswith("@") else f"@{name}"


_PASSWORD_FILE = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Read the password from the first line of this file ('-': standard input).",
)

# -- damas volume ---------------------------------------------------------------------------


@click.group(
    "volume",
    epilog="""\b
Examples:
  damas volume list
  damas volume add vol_paris paris file:///srv/paris/
  damas volume add vol_tokyo tokyo ssh://sync@tokyo.example.com/srv/p/ ssh_port=2222
  damas volume set vol_paris enableEmission=false 'rsync_args=-z --bwlimit 5M'
  damas volume set vol_paris settleTime=null            removes the key
  damas volume rm vol_lyon""",
)
def volume() -> None:
    """Sites: list, add, change or remove volume elements."""


@volume.command("list", epilog="\b\nExamples:\n  damas volume list\n  damas -l volume list")
@_common
def volume_list(ctx: click.Context, **options: Any) -> None:
    """Every volume (sorted by name), with its agent's status keys."""
    from damas_core.sync.volumes import volumes

    Runner(ctx, options).run(volumes)


@volume.command(
    "add",
    epilog="""\b
Examples:
  damas volume add vol_paris paris file:///srv/paris/
  damas volume add vol_tokyo tokyo ssh://sync@tokyo/srv/p/ enableScans=false""",
)
@click.argument("volume_id")
@click.argument("name")
@click.argument("url")
@click.argument("keys", nargs=-1)
@_common
def volume_add(
    ctx: click.Context, volume_id: str, name: str, url: str, keys: tuple[str, ...], **options: Any
) -> None:
    """Create the volume VOLUME_ID of the site NAME at URL (file:///path/ or
    ssh://user@host[:port]/path/), with more KEY=VALUE keys; exits 49 if it exists."""
    from damas_core.sync.volumes import create_volume

    extra = _guard(lambda: key_values(keys, "volume add")) if keys else {}
    element = {**extra, "_id": volume_id, "name": name, "url": url}
    Runner(ctx, options).run(
        lambda t: create_volume(t, element), lambda r: outcome(r, ok=201, none=409)
    )


@volume.command(
    "set",
    epilog="""\b
Examples:
  damas volume set vol_paris enableReception=false syncAmountReception=500
  damas volume set vol_paris '{"excludePatternRules": ["*.tmp"]}'
  damas volume set vol_paris rsync_args=null                removes the key""",
)
@click.argument("volume_id")
@click.argument("keys", nargs=-1, required=True)
@_common
def volume_set(ctx: click.Context, volume_id: str, keys: tuple[str, ...], **options: Any) -> None:
    """Change keys of the volume VOLUME_ID (KEY=null removes one); exits 44 if absent."""
    from damas_core.sync.volumes import update_volume, volume

    values = _guard(lambda: key_values(keys, "volume set"))

    def change(t: Any) -> Any:
        volume(t, volume_id)  # a volume, not any element
        return update_volume(t, {**values, "_id": volume_id})

    Runner(ctx, options).run(change, outcome)


@volume.command("rm", epilog="\b\nExamples:\n  damas volume rm vol_lyon")
@click.argument("volume_id")
@_common
def volume_rm(ctx: click.Context, volume_id: str, **options: Any) -> None:
    """Remove the volume VOLUME_ID (its files' elements stay); exits 44 if absent."""
    from damas_core.sync.volumes import volume

    def remove(t: Any) -> Any:
        element = t.read(volume_id)
        if element is None:
            return None
        volume(t, volume_id)  # refuses an element that is not a volume
        return t.delete(volume_id)

    Runner(ctx, options).run(remove, outcome)


# -- damas params ---------------------------------------------------------------------------


@click.group(
    "params",
    epilog="""\b
Examples:
  damas params get
  damas params get sleepBetweenScans
  damas params set syncEverywhere=true sleepBetweenScans=30
  damas params set retryMaxDelay=null                 back to the default""",
)
def params() -> None:
    """The sync engine's global parameters (rsyncGlobalParameters)."""


@params.command("get", epilog="\b\nExamples:\n  damas params get\n  damas params get agentTimeout")
@click.argument("key", required=False)
@_common
def params_get(ctx: click.Context, key: str | None, **options: Any) -> None:
    """The global parameters in force (the defaults under what is set), or one KEY."""
    from damas_core.sync.volumes import global_parameters

    def get(t: Any) -> Any:
        values = global_parameters(t)
        if key is None:
            return values
        if key not in values:
            raise NotFound(f"params error: no parameter {key!r}", key=key)
        return values[key]

    Runner(ctx, options).run(get)


@params.command(
    "set",
    epilog="""\b
Examples:
  damas params set syncEverywhere=true
  damas params set '{"agentTimeout": 600, "retryDelay": 60}'""",
)
@click.argument("keys", nargs=-1, required=True)
@_common
def params_set(ctx: click.Context, keys: tuple[str, ...], **options: Any) -> None:
    """Set global parameters (KEY=null removes one: its default applies again)."""
    from damas_core.sync.volumes import set_global_parameters

    values = _guard(lambda: key_values(keys, "params set"))
    Runner(ctx, options).run(lambda t: set_global_parameters(t, values))


# -- damas user -----------------------------------------------------------------------------


@click.group(
    "user",
    epilog="""\b
Examples:
  damas user list
  damas user add alice --class editor --email alice@example.com
  damas user add agent --class admin --password-file /run/secrets/agent
  damas user passwd alice                 asks for the new password twice
  damas user disable bob
  damas user disable --enable bob""",
)
def user() -> None:
    """Accounts: list, add, change a password, disable."""


def _check_user(element: dict[str, Any], *, partial: bool) -> None:
    from damas_core.schemas import validate

    validate("user", element, partial=partial)


@user.command("list", epilog="\b\nExamples:\n  damas user list\n  damas -l user list")
@_common
def user_list(ctx: click.Context, **options: Any) -> None:
    """Every account, sorted by id (passwords are never shown)."""

    def accounts(t: Any) -> list[dict[str, Any]]:
        found = t.search_elements("_id:/^@/", sort="_id")
        return [u for u in found if u["_id"].startswith("@")]

    Runner(ctx, options).run(accounts)


@user.command(
    "add",
    epilog="""\b
Examples:
  damas user add alice --class editor
  printf '%s\\n' "$PW" | damas user add bob      the password from standard input""",
)
@click.argument("name")
@click.option(
    "--class",
    "class_",
    type=click.Choice(["guest", "user", "editor", "admin"]),
    default="user",
    show_default=True,
    help="What the account may do.",
)
@click.option("--email", help="E-mail address (it also signs in).")
@click.option("--fullname", help="Full name.")
@click.option("--site", help="The site (volume name) where the user works.")
@_PASSWORD_FILE
@_common
def user_add(
    ctx: click.Context,
    name: str,
    class_: str,
    email: str | None,
    fullname: str | None,
    site: str | None,
    password_file: Path | None,
    **options: Any,
) -> None:
    """Create the account NAME; exits 49 if it exists."""
    element: dict[str, Any] = {"_id": _user_id(name), "class": class_}
    for key, value in (("email", email), ("fullname", fullname), ("site", site)):
        if value is not None:
            element[key] = value
    _guard(lambda: _check_user(element, partial=False))
    # Hashed here: only admins create accounts, and an admin's write of a hash keeps it,
    # so a password that looks like a damas-core digest is not mistaken for one.
    element["password"] = hash_password(read_password(password_file))
    Runner(ctx, options).run(lambda t: t.create(element), lambda r: outcome(r, ok=201, none=409))


@user.command(
    "passwd",
    epilog="""\b
Examples:
  damas user passwd alice
  damas user passwd agent --password-file /run/secrets/agent""",
)
@click.argument("name")
@_PASSWORD_FILE
@_common
def user_passwd(ctx: click.Context, name: str, password_file: Path | None, **options: Any) -> None:
    """Set the password of NAME (tokens issued before stop working); exits 44 if absent."""
    uid = _user_id(name)
    _guard(lambda: _check_user({"_id": uid}, partial=True))
    password = read_password(password_file)
    if is_legacy(password):
        # An admin's write of a hex digest is kept as a damas-core hash, so this password
        # would not sign in (and a hash sent instead would be hashed again for a user
        # changing their own): refuse it rather than guess.
        raise click.UsageError(
            "a password of 32 or 40 hexadecimal characters reads as a damas-core digest; "
            "choose another"
        )

    def change(t: Any) -> Any:
        if t.read(uid) is None:
            return None
        return t.update({"_id": uid, "password": password})

    Runner(ctx, options).run(change, outcome)


@user.command(
    "disable",
    epilog="""\b
Examples:
  damas user disable bob
  damas user disable --enable bob""",
)
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the account again.")
@_common
def user_disable(ctx: click.Context, name: str, enable: bool, **options: Any) -> None:
    """Disable the account NAME (it can no longer sign in); exits 44 if absent."""
    uid = _user_id(name)
    _guard(lambda: _check_user({"_id": uid}, partial=True))

    def change(t: Any) -> Any:
        if t.read(uid) is None:
            return None
        return t.update({"_id": uid, "disabled": None if enable else True})

    Runner(ctx, options).run(change, outcome)


# -- damas conflicts ------------------------------------------------------------------------


@click.group(
    "conflicts",
    epilog="""\b
Examples:
  damas conflicts list
  damas conflicts resolve /shots/a.exr paris --keep incoming
  damas conflicts resolve /shots/a.exr paris --keep local --root /mnt/paris/""",
)
def conflicts() -> None:
    """Files changed at two sites since their last sync: both copies were kept."""


@conflicts.command(
    "list", epilog="\b\nExamples:\n  damas conflicts list\n  damas -l conflicts list"
)
@_common
def conflicts_list(ctx: click.Context, **options: Any) -> None:
    """Every recorded conflict: the file, the site, and where the incoming copy is."""
    from damas_core.sync.conflicts import conflicts as recorded

    Runner(ctx, options).run(recorded)


@conflicts.command(
    "resolve",
    epilog="""\b
Examples:
  damas conflicts resolve /shots/a.exr paris --keep incoming
  damas conflicts resolve /shots/a.exr paris --keep local
  damas conflicts resolve /shots/a.exr nas --keep incoming \\
      --ssh 'ssh -i ~/.local/state/damas/hub/hub_key'""",
)
@click.argument("file_id")
@click.argument("site")
@click.option(
    "--keep",
    type=click.Choice(["local", "incoming"]),
    required=True,
    help="incoming: the other site's copy replaces this one; local: this copy becomes "
    "the next version.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True),
    help="The site's directory on this machine (default: its volume url's path).",
)
@click.option(
    "--ssh",
    "ssh_command",
    default=None,
    help="For a storage driven by a hub, run at the hub: the ssh command reaching it "
    "(with the hub's key, say: 'ssh -i ~/.local/state/damas/hub/hub_key').",
)
@_common
def conflicts_resolve(
    ctx: click.Context,
    file_id: str,
    site: str,
    keep: str,
    root: str | None,
    ssh_command: str | None,
    **options: Any,
) -> None:
    """End the conflict of FILE_ID at SITE, on that site's machine (at the hub for a
    storage it drives), keeping one copy."""
    import shlex

    from damas_core.sync.conflicts import resolve

    ssh = shlex.split(ssh_command) if ssh_command else None
    Runner(ctx, options).run(
        lambda t: resolve(t, file_id, site, keep, root=root, ssh_command=ssh)  # type: ignore[arg-type]
    )


__all__ = ["conflicts", "key_values", "params", "read_password", "user", "volume"]
