"""The tracker operations on the command line: ``damas create``, ``read``, … ``signout``.

The commands and exit codes are those of damas-core's shell command. Each works either
against a server (``-s URL``, ``$DAMAS_SERVER``, default ``http://localhost:8090``)
through :func:`damas_core.client.connect`, or on a store directly (``--store URL``)
through :func:`damas_core.open`: both give an object with the ``Session`` API, so the
command code is the same, and so are the outcomes (a result with ``null`` holes exits 7
as the server's 207 does).

Arguments are JSON; ``-`` (or no argument with a pipe on standard input) reads
standard input, which may also hold one id or JSON value per line.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from damas_core.errors import DamasError
from damas_core.http.handlers import id_body, outcome

DEFAULT_SERVER = "http://localhost:8090"

#: Exit code for each HTTP status, as damas-core's shell command maps them.
EXIT_CODES = {200: 0, 201: 0, 207: 7, 400: 40, 401: 41, 403: 43, 404: 44, 409: 49, 500: 50}
EXIT_USAGE = 1
EXIT_UNREACHABLE = 3
EXIT_OTHER = 60

_MESSAGES = {
    207: "Multi-Status (some objects do not exist)",
    404: "Not found (all the objects do not exist)",
    409: "Conflict (all objects already exist with these identifiers)",
}


def exit_code(status: int) -> int:
    """The exit code for an HTTP status (or an equivalent outcome)."""
    return EXIT_CODES.get(status, EXIT_OTHER)


# -- options shared by every command -------------------------------------------------------


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The connection and output options, accepted after the command name too."""
    options = [
        click.option(
            "-s",
            "--server",
            metavar="URL",
            help="Server URL (default $DAMAS_SERVER, else the one signin saved, else http://localhost:8090).",
        ),
        click.option(
            "--store", metavar="URL", help="Work on this store directly, without a server."
        ),
        click.option("--token", "--apikey", "token", metavar="TOKEN", help="Token to send."),
        click.option("-l", "--lines", is_flag=True, help="Print one result per line."),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing."),
        click.option("-v", "--verbose", is_flag=True, help="Print each request on standard error."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return click.pass_context(fn)


def _settings(ctx: click.Context, local: dict[str, Any]) -> dict[str, Any]:
    """Group options (``damas -s URL read``) overridden by command options. The server
    is ``-s``, else ``$DAMAS_SERVER``, else the one ``signin`` last signed in to, else
    :data:`DEFAULT_SERVER`."""
    merged = dict((ctx.find_root().obj or {}) if ctx.find_root().obj else {})
    merged.update({k: v for k, v in local.items() if v not in (None, False)})
    if not merged.get("server"):
        merged["server"] = os.environ.get("DAMAS_SERVER") or load_server() or DEFAULT_SERVER
    if not merged.get("token"):
        merged["token"] = os.environ.get("DAMAS_TOKEN") or None
    return merged


def config_dir() -> Path:
    """Where signin saves tokens and the server: ``$DAMAS_CONFIG_DIR``, else
    ``$XDG_CONFIG_HOME/damas``."""
    if os.environ.get("DAMAS_CONFIG_DIR"):
        return Path(os.environ["DAMAS_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "damas"


def token_file(server: str) -> Path:
    """The file holding the token saved for ``server`` (one file per server URL)."""
    digest = hashlib.sha256(server.rstrip("/").encode()).hexdigest()[:16]
    return config_dir() / f"token-{digest}"


def _write_private(path: Path, text: str) -> Path:
    """Write ``text`` readable by its owner only (mode 0600), in a 0700 folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)
    return path


def save_token(server: str, token: str) -> Path:
    """Write the token readable by its owner only (mode 0600)."""
    return _write_private(token_file(server), token)


def server_file() -> Path:
    """The file holding the server ``signin`` last signed in to."""
    return config_dir() / "server"


def save_server(server: str) -> Path:
    """Remember ``server`` as the one to talk to when neither ``-s`` nor
    ``$DAMAS_SERVER`` says (``signin`` does this)."""
    return _write_private(server_file(), server.rstrip("/"))


def load_server() -> str | None:
    """The server ``signin`` last signed in to, or ``None``."""
    try:
        return server_file().read_text().strip() or None
    except OSError:
        return None


def load_token(server: str) -> str | None:
    try:
        return token_file(server).read_text().strip() or None
    except OSError:
        return None


class Runner:
    """Opens the tracker (server or store), runs one operation, prints, exits."""

    def __init__(self, ctx: click.Context, local: dict[str, Any]) -> None:
        self.ctx = ctx
        self.settings = _settings(ctx, local)
        self.lines = bool(self.settings.get("lines"))
        self.quiet = bool(self.settings.get("quiet"))
        self.verbose = bool(self.settings.get("verbose"))
        self.store = self.settings.get("store")
        self.server = self.settings["server"]

    def open(self) -> Any:
        """An object with the ``Session`` API: the store's tracker or a client."""
        if self.store:
            import damas_core

            if self.verbose:
                click.echo(f"open {self.store}", err=True)
            return damas_core.open(self.store)
        from damas_core.client import connect

        client = connect(self.server, self.settings.get("token") or load_token(self.server))
        if self.verbose:

            def show(response: Any, *args: Any, **kwargs: Any) -> None:
                request = response.request
                click.echo(f"{request.method} {request.url} -> {response.status_code}", err=True)
                if request.body and self.verbose:
                    body = (
                        request.body
                        if isinstance(request.body, bytes)
                        else str(request.body).encode()
                    )
                    click.echo(body[:2000].decode(errors="replace"), err=True)

            client.http.hooks["response"].append(show)
        return client

    def run(self, fn: Callable[[Any], Any], status: Callable[[Any], int] = lambda r: 200) -> None:
        """Call ``fn(tracker)``, print the result and exit with the matching code."""
        tracker = result = None
        try:
            tracker = self.open()
            result = fn(tracker)
        except DamasError as e:
            self.fail(e)
        finally:
            if tracker is not None:
                tracker.close()
        code = status(result)
        if code in (404, 409):
            click.echo(f"damas: {_MESSAGES[code]}", err=True)
        else:
            if code == 207:
                click.echo(f"damas: {_MESSAGES[207]}", err=True)
            self.print(result)
        self.ctx.exit(exit_code(code))

    def fail(self, e: DamasError) -> None:
        from damas_core.client import Unreachable

        if isinstance(e, Unreachable):
            click.echo(f"damas: server {self.server!r} is unreachable", err=True)
            self.ctx.exit(EXIT_UNREACHABLE)
        click.echo(f"damas: {e}", err=True)
        self.ctx.exit(exit_code(e.status))

    def print(self, result: Any) -> None:
        if self.quiet:
            return
        if self.lines:
            items = result.get("ids") if isinstance(result, dict) and "ids" in result else result
            for item in items if isinstance(items, list) else [items]:
                click.echo(item if isinstance(item, str) else orjson.dumps(item).decode())
        else:
            click.echo(orjson.dumps(result).decode())


# -- argument parsing ---------------------------------------------------------------------


def _stdin_values() -> Any:
    """Standard input as one JSON value, or one JSON value (else a plain id) per line."""
    text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError("nothing on standard input")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    values = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            values.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            values.append(line)
    return values


def _wants_stdin(args: tuple[str, ...]) -> bool:
    return args == ("-",) or (not args and not sys.stdin.isatty())


def json_argument(args: tuple[str, ...], what: str) -> Any:
    """A JSON argument (the words joined, as the shell command did) or standard input."""
    if _wants_stdin(args):
        return _stdin_values()
    if not args:
        raise click.UsageError(f"missing {what} (JSON, or - to read standard input)")
    text = " ".join(args)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise DamasError(
            f"malformed JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}"
        ) from None


def ids_argument(args: tuple[str, ...]) -> Any:
    """Ids: JSON (``'"id"'``, ``'["a","b"]'``), plain words (one id each), or stdin."""
    if _wants_stdin(args):
        return id_body(_stdin_values())
    if not args:
        raise click.UsageError("missing ids (JSON, plain ids, or - to read standard input)")
    try:
        value = orjson.loads(" ".join(args))
        if isinstance(value, str | list | int | float) and not isinstance(value, bool):
            return id_body(value)
    except orjson.JSONDecodeError:
        pass
    return args[0] if len(args) == 1 else list(args)


def _flat(result: Any) -> Any:
    if isinstance(result, list):
        return [x for item in result for x in (item if isinstance(item, list) else [item])]
    return result


def _bad_json(e: DamasError) -> DamasError:
    e.status = 400
    return e


def _guard(fn: Callable[[], Any]) -> Any:
    """Run argument parsing; malformed JSON exits 40 like the server's 400 would."""
    try:
        return fn()
    except DamasError as e:
        click.echo(f"damas: {_bad_json(e)}", err=True)
        sys.exit(exit_code(400))


_ARGS = click.argument("args", nargs=-1)


# -- the commands -------------------------------------------------------------------------


@click.command(
    epilog="""\b
Examples:
  damas create '{"_id": "/shots/a.exr", "status": "wip"}'
  damas create '[{"_id": "/a"}, {"_id": "/b"}]'
  damas create '{"_id": ["/a", "/b"], "tag": "x"}'     one element per id
  cat elements.json | damas create -"""
)
@_ARGS
@_common
def create(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Create element(s) from JSON; exits 49 if every _id already exists."""
    elements = _guard(lambda: json_argument(args, "elements"))
    Runner(ctx, options).run(lambda t: t.create(elements), lambda r: outcome(r, ok=201, none=409))


@click.command(
    epilog="""\b
Examples:
  damas read /shots/a.exr
  damas read '["/shots/a.exr", "/shots/b.exr"]'
  damas search 'status:wip' | damas read -"""
)
@_ARGS
@_common
def read(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Read element(s) by id; exits 7 if some do not exist, 44 if none do."""
    ids = _guard(lambda: ids_argument(args))
    Runner(ctx, options).run(lambda t: t.read(ids), outcome)


@click.command(
    epilog="""\b
Examples:
  damas update '{"_id": "/shots/a.exr", "status": "done"}'
  damas update '{"_id": "/shots/a.exr", "status": null}'   removes the key"""
)
@_ARGS
@_common
def update(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Set keys of existing element(s); a null value removes the key."""
    elements = _guard(lambda: json_argument(args, "elements"))
    Runner(ctx, options).run(lambda t: t.update(elements), outcome)


@click.command(
    epilog="""\b
Examples:
  damas upsert '{"_id": "/shots/a.exr", "status": "wip"}'"""
)
@_ARGS
@_common
def upsert(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Create element(s), or update those whose _id exists."""
    elements = _guard(lambda: json_argument(args, "elements"))
    Runner(ctx, options).run(lambda t: t.upsert(elements), outcome)


@click.command(
    epilog="""\b
Examples:
  damas delete /shots/a.exr
  damas -l search 'status:obsolete' | damas delete -"""
)
@_ARGS
@_common
def delete(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Delete element(s) by id, and the links to or from them."""
    ids = _guard(lambda: ids_argument(args))
    Runner(ctx, options).run(lambda t: t.delete(ids), outcome)


@click.command(
    epilog="""\b
Examples:
  damas untrack /tmp/render.log
  damas -l search 'origin:paris _id:/\\.bak$/' | damas untrack -

\b
The files stay on disk at every site; agents do not publish them again while
they are unchanged (docs/sync.md, "Untracked files")."""
)
@_ARGS
@_common
def untrack(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Stop tracking file(s): delete their elements and history, keep the files."""
    from damas_core.sync.untrack import untrack as untrack_files

    ids = _guard(lambda: ids_argument(args))
    paths = [ids] if isinstance(ids, str) else ids
    Runner(ctx, options).run(lambda t: untrack_files(t, paths), outcome)


@click.command(
    epilog="""\b
Examples:
  damas graph /shots/a.exr
  damas graph --depth 1 '["/a", "/b"]'"""
)
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Levels of links to walk (0: all).",
)
@_ARGS
@_common
def graph(ctx: click.Context, args: tuple[str, ...], depth: int, **options: Any) -> None:
    """The elements linked to id(s): nodes, then the links walked."""
    ids = _guard(lambda: ids_argument(args))
    Runner(ctx, options).run(lambda t: t.graph(ids, depth), _graph_status)


def _graph_status(result: list[Any]) -> int:
    """As the HTTP answer: 404 when no node was found, 207 when an id given is missing."""
    if not any(e is not None for e in result):
        return 404
    return 207 if None in result else 200


@click.command(
    epilog="""\b
Examples:
  damas search 'origin:paris'
  damas search '_id:/.*mov/'
  damas -l search 'file_size>1000' --sort '-file_size' --limit 10"""
)
@click.option("--sort", help="Sort key (`key`, `-key`) or JSON.")
@click.option("--skip", type=click.IntRange(min=0), default=0)
@click.option("--limit", type=click.IntRange(min=0), default=None)
@_ARGS
@_common
def search(
    ctx: click.Context,
    args: tuple[str, ...],
    sort: str | None,
    skip: int,
    limit: int | None,
    **options: Any,
) -> None:
    """Ids of the elements matching a query (the words are joined)."""
    if not args:
        raise click.UsageError("missing query (e.g. 'origin:paris' or '*')")
    query = " ".join(args)
    sort_value: Any = sort
    if sort:
        try:
            sort_value = orjson.loads(sort)
        except orjson.JSONDecodeError:
            sort_value = sort
    Runner(ctx, options).run(lambda t: t.search(query, sort=sort_value, skip=skip, limit=limit))


@click.command(
    epilog="""\b
Examples:
  damas search_one 'origin:paris'"""
)
@_ARGS
@_common
def search_one(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """The first element matching a query, or null."""
    if not args:
        raise click.UsageError("missing query")
    query = " ".join(args)
    Runner(ctx, options).run(lambda t: t.search_one(query))


@click.command(
    epilog="""\b
Examples:
  damas search_mongo '{"deleted": true}' '{"_id": 1}' 0 0
  damas -l search_mongo '{"_id": "REGEX_^/shots/"}'"""
)
@click.argument("query")
@click.argument("sort", required=False, default="null")
@click.argument("limit", required=False, type=click.IntRange(min=0), default=0)
@click.argument("skip", required=False, type=click.IntRange(min=0), default=0)
@_common
def search_mongo(
    ctx: click.Context, query: str, sort: str, limit: int, skip: int, **options: Any
) -> None:
    """A MongoDB-style search: QUERY SORT LIMIT SKIP; prints {count, ids}."""
    q = _guard(lambda: json_argument((query,), "query"))
    s = _guard(lambda: json_argument((sort,), "sort"))
    Runner(ctx, options).run(lambda t: t.search_mongo(q, s, limit, skip))


@click.command(
    epilog="""\b
Examples:
  damas publish '{"_id": "/shots/a.exr", "comment": "first take", "origin": "paris"}'"""
)
@_ARGS
@_common
def publish(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Start tracking file(s): each needs _id (a path), comment and origin."""
    elements = _guard(lambda: json_argument(args, "files"))
    Runner(ctx, options).run(lambda t: t.publish(elements), lambda r: outcome(r, ok=201, none=409))


@click.command(
    epilog="""\b
Examples:
  damas lock /shots/a.exr /shots/b.exr"""
)
@_ARGS
@_common
def lock(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Lock element(s) for you, all or none; exits 49 if one is locked by someone else
    (and says who holds it)."""
    ids = _guard(lambda: ids_argument(args))
    Runner(ctx, options).run(lambda t: t.lock(ids, strict=True))


@click.command(
    epilog="""\b
Examples:
  damas unlock /shots/a.exr
  damas unlock --force /shots/a.exr     admins: whoever holds it"""
)
@click.option("--force", is_flag=True, help="Unlock whoever holds the lock (admins only).")
@_ARGS
@_common
def unlock(ctx: click.Context, args: tuple[str, ...], force: bool, **options: Any) -> None:
    """Unlock element(s) you hold, all or none."""
    ids = _guard(lambda: ids_argument(args))
    Runner(ctx, options).run(lambda t: t.unlock(ids, force=force, strict=True))


@click.command(
    epilog="""\b
Examples:
  damas comment '{"#parent": "/shots/a.exr", "comment": "looks good"}'
  damas comment '{"#parent": ["/a", "/b"], "comment": "both ok"}'"""
)
@_ARGS
@_common
def comment(ctx: click.Context, args: tuple[str, ...], **options: Any) -> None:
    """Comment on element(s): {"#parent": id or [ids], "comment": text}."""
    elements = _guard(lambda: json_argument(args, "comment"))
    Runner(ctx, options).run(
        lambda t: t.comment(elements), lambda r: outcome(_flat(r), ok=201, none=404)
    )


@click.command(
    epilog="""\b
Examples:
  damas version /shots/a.exr '{"file": "/shots/a_v2.exr"}'"""
)
@click.argument("id")
@click.argument("keys", nargs=-1)
@_common
def version(ctx: click.Context, id: str, keys: tuple[str, ...], **options: Any) -> None:
    """Archive ID's current state as a child and update it with KEYS (JSON)."""
    values = _guard(lambda: json_argument(keys, "keys")) if keys else {}
    Runner(ctx, options).run(lambda t: t.version(id, values), lambda r: outcome(r, ok=201))


@click.command(
    epilog="""\b
Examples:
  damas -s https://tracker.example.com signin alice
  damas signin alice 's3cret' 7d          a token valid 7 days
  damas signin                            asks for both"""
)
@click.argument("username", required=False)
@click.argument("password", required=False)
@click.argument("lifespan", required=False)
@_common
def signin(
    ctx: click.Context,
    username: str | None,
    password: str | None,
    lifespan: str | None,
    **options: Any,
) -> None:
    """Sign in to the server and save the token (mode 0600) for the next commands; the
    server is remembered too, so they need no -s."""
    runner = Runner(ctx, options)
    if runner.store:
        raise click.UsageError(
            "signin talks to a server; with --store there is nobody to sign in to"
        )
    runner.lines = True  # the bare token, as damas-core's shell command printed it
    if not username:
        username = click.prompt("login", err=True)
    if not password:
        password = click.prompt("password", hide_input=True, err=True)

    def sign(client: Any) -> Any:
        answer = client.sign_in(username, password, lifespan)
        save_token(runner.server, answer["token"])
        save_server(runner.server)
        return answer["token"]

    runner.run(sign)


@click.command(
    epilog="""\b
Examples:
  damas signout"""
)
@_common
def signout(ctx: click.Context, **options: Any) -> None:
    """Revoke the saved token on the server and forget it."""
    runner = Runner(ctx, options)
    if runner.store:
        raise click.UsageError(
            "signout talks to a server; with --store there is nobody to sign out from"
        )
    runner.quiet = True

    def sign_out(client: Any) -> bool:
        from damas_core.errors import Unauthorized

        try:
            if client.token:
                client.sign_out()
        except Unauthorized:
            pass  # already revoked or expired: forgetting it is all that is left
        finally:
            token_file(runner.server).unlink(missing_ok=True)
        return True

    runner.run(sign_out)


@click.command(
    epilog="""\b
Examples:
  damas verify"""
)
@_common
def verify(ctx: click.Context, **options: Any) -> None:
    """Print the signed-in user; exits 41 if the token is missing or invalid."""
    Runner(ctx, options).run(lambda t: t.verify() if hasattr(t, "verify") else t.user)


__all__ = [
    "EXIT_CODES",
    "comment",
    "create",
    "delete",
    "graph",
    "lock",
    "publish",
    "read",
    "search",
    "search_mongo",
    "search_one",
    "signin",
    "signout",
    "unlock",
    "update",
    "upsert",
    "verify",
    "version",
]
