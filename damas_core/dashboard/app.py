"""The dashboard's pages: what :func:`damas_core.http.app.make_app` serves outside ``/api/``.

Pages (below the mount prefix):

- ``GET /``: the files × sites table (``q`` query, ``prefix``, ``state``, ``site``,
  ``sort``, ``after``, ``skip``, ``limit``); ``GET /folders``: folders with their completion;
  ``GET /sites``: completion per site and each site's health; ``GET /site?name=``: one
  site's agent, connection, capacity, ETA and activity log; ``GET /file?id=``: one
  file, its history, comments, versions and actions;
- ``GET|POST /signin``, ``POST /signout``: cookie sign-in (``username``, ``password``);
- ``POST /file`` (an ``action``), ``POST /sites``: the writes, each made through the
  signed-in user's session, so the core's permissions apply as on the API;
- ``GET /cells?id=…``: the current states of some files, as JSON, for live updates;
- ``GET /static/…``: the script and style sheet shipped in the package.

Every answer carries a strict Content-Security-Policy (scripts and styles from this
server only, nothing inline); templates escape every value (Jinja2 autoescape).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from damas_core.dashboard import csrf
from damas_core.dashboard.cells import FileRows, cell, icon, parts, when
from damas_core.errors import (
    BadRequest,
    DamasError,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from damas_core.sync import activity
from damas_core.sync.completion import CompletionCache
from damas_core.sync.eta import duration as eta_text
from damas_core.sync.eta import etas
from damas_core.sync.row_cache import RowCache
from damas_core.sync.status import (
    MAX_LIMIT,
    SORTS,
    STATES,
    Filters,
    SitesCache,
    human_size,
    in_flight,
    percent,
    row_of,
    rows_for,
    site_health,
)
from damas_core.sync.status import page as files_page
from damas_core.sync.volumes import endpoint_of, global_parameters, update_volume

if TYPE_CHECKING:  # the HTTP layer hands its types in: it imports this module, not the reverse
    from damas_core.http.messages import Answer, Call

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_CLASS_RANK = {"guest": 0, "user": 1, "editor": 2, "admin": 3}
#: volume switches and batch sizes an admin edits on the sites page
SWITCHES = ("enableScans", "enableReception", "enableEmission")
#: events a site's page shows, the latest
SITE_LOG = 100
BATCHES = ("syncAmountReception", "syncAmountEmission")


class Services(Protocol):
    """What the dashboard needs from the HTTP application."""

    tracker: Any
    auth: Any
    tokens: Any
    signin: Any  # a damas_core.signin.SignIn: the rules the API applies too

    def authenticate(self, call: Call) -> Any: ...

    def client_address(self, environ: dict[str, Any]) -> str: ...


def _duration(ms: Any) -> str:
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return "—"
    return f"{ms / 1000:.1f} s"


_env = Environment(
    loader=PackageLoader("damas_core.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # the templates ship in the package: no file to look at again
)
_env.filters.update(
    size=human_size, when=when, duration=_duration,
    percent=percent, icon=icon, urlq=lambda v: quote(str(v), safe=""), eta=eta_text,
)  # fmt: skip
_env.globals["cell"] = cell


def _options(values: Any, selected: Any) -> Markup:
    """The ``<option>`` of each of ``values``, those in ``selected`` selected (each
    value escaped)."""
    chosen = set(selected)
    return Markup(
        "".join(
            f'<option value="{e}"{" selected" if v in chosen else ""}>{e}</option>'
            for v, e in ((v, escape(v)) for v in values)
        )
    )


_env.globals["options"] = _options


class Dashboard:
    """The dashboard of one application; call it with a :class:`Call` outside ``/api/``."""

    def __init__(self, app: Services, answer: type[Answer]) -> None:
        self.app = app
        self.answer = answer  # damas_core.http.messages.Answer
        self.tracker = app.tracker
        self.known_sites = SitesCache(app.tracker)
        # completion per site and per folder: one read of the store, then the feed
        self.counts = CompletionCache(app.tracker, self.known_sites)
        # the files table's rows, made again only for the files that changed
        self.rows = RowCache()
        self.file_rows = FileRows()
        self._pages: dict[tuple[str, str], Callable[[Call, Any], Answer]] = {
            ("GET", "/"): self.files,
            ("GET", "/folders"): self.folders,
            ("GET", "/sites"): self.sites,
            ("GET", "/site"): self.site,
            ("POST", "/sites"): self.edit_site,
            ("GET", "/file"): self.file,
            ("POST", "/file"): self.file_action,
            ("GET", "/cells"): self.cells,
        }

    # -- dispatch -------------------------------------------------------------------------

    def __call__(self, call: Call) -> Answer:
        path = call.path.rstrip("/") or "/"
        if path.startswith("/static/") and call.method in ("GET", "HEAD"):
            return self.static(path[len("/static/") :])
        if path == "/signin":
            return self.sign_in_page(call) if call.method != "POST" else self.sign_in(call)
        if path == "/signout" and call.method == "POST":
            return self.sign_out(call)
        # HEAD is GET without the body (the server leaves it out)
        page = self._pages.get(("GET" if call.method == "HEAD" else call.method, path))
        if page is None:
            known = {p for _, p in self._pages} | {"/signin", "/signout"}
            if path in known:
                return self.render(
                    call, "error.html", 405, message=f"{call.method} is not allowed here"
                )
            return self.render(call, "error.html", 404, message=f"no page {path}")
        session = self.session(call)
        if session is None:
            if path == "/cells":
                raise Unauthorized("dashboard error: sign in first", op="dashboard")
            return self.redirect(call.base + "/signin?" + urlencode({"next": _here(call)}))
        # the feed position before reading anything: a change made while the page is
        # drawn then reaches the page's live updates instead of being lost
        call.environ["damas.since"] = self._last_seq()
        try:
            if call.method == "POST":
                self.check_csrf(call)
            return page(call, session)
        except DamasError as e:
            if path == "/cells":
                raise
            return self.render(call, "error.html", e.status, message=str(e), session=session)

    def _last_seq(self) -> int:
        return self.tracker.storage.last_seq()

    def session(self, call: Call) -> Any:
        """The signed-in user's session, or ``None`` (the API's rules, without the
        content-type check the dashboard's forms replace by their CSRF field)."""
        if self.app.auth == "jwt":
            token, _ = call.token()
            if token is None:
                return None
            try:
                return self.app.signin.session(token)
            except Unauthorized:
                return None
        try:
            return self.app.authenticate(call)
        except Unauthorized:
            return None

    # -- answers --------------------------------------------------------------------------

    def csrf_binding(self, call: Call) -> str | None:
        """What the request's forms are bound to (see :mod:`damas_core.dashboard.csrf`):
        its sign-in token's ``jti``, else its ``csrf`` nonce cookie, else nothing."""
        if self.app.auth == "jwt":
            token, _ = call.token()
            if token is not None:
                try:
                    return csrf.session_binding(self.app.tokens.decode(token)["jti"])
                except Unauthorized:
                    pass  # an expired or revoked token: the page is an anonymous one
        nonce = call.request.cookies.get(csrf.COOKIE)
        return csrf.nonce_binding(nonce) if nonce else None

    def render(self, call: Call, template: str, status: int = 200, **values: Any) -> Answer:
        binding = self.csrf_binding(call)
        fresh = None
        if binding is None:
            fresh = csrf.new_cookie()
            binding = csrf.nonce_binding(fresh)
        session = values.pop("session", None)
        rank = _CLASS_RANK.get(getattr(session, "user_class", ""), -1) if session else -1
        since = call.environ.get("damas.since")
        html = _env.get_template(template).render(
            base=call.base,
            csrf=csrf.expected(self.app.tokens.secret, binding),
            user=getattr(session, "username", None) if session is not None else None,
            user_class=getattr(session, "user_class", None) if session is not None else None,
            can_write=rank >= 1,
            can_edit=rank >= 2,
            is_admin=rank >= 3,
            signed_in=session is not None and self.app.auth == "jwt",
            since=since,
            **values,
        )
        answer = self.answer(status, raw=html.encode(), content_type="text/html; charset=utf-8")
        answer.headers.extend(_security_headers())
        if fresh:
            answer.headers.append(("Set-Cookie", _cookie(call, csrf.COOKIE, fresh, max_age=None)))
        return answer

    def static(self, name: str) -> Answer:
        if name not in _STATIC:
            raise NotFound(f"dashboard error: no static file {name!r}", op="dashboard")
        data = resources.files("damas_core.dashboard").joinpath("static", name).read_bytes()
        answer = self.answer(200, raw=data, content_type=_STATIC[name] + "; charset=utf-8")
        answer.headers.extend(_security_headers())
        return answer

    def redirect(self, location: str) -> Answer:
        """303 to ``location``: after a form, the browser reloads a page, not the post."""
        answer = self.answer(303, raw=b"", content_type="text/plain")
        answer.headers.append(("Location", location))
        return answer

    def check_csrf(self, call: Call) -> None:
        """Refuse a form whose ``csrf`` field is not the one of the request's own
        binding, a request carrying two cookies of one name, or a form the browser
        posted from a page of another host."""
        if not csrf.from_here(call.environ):
            raise Forbidden(
                "dashboard error: this form was posted from a page of another site; open "
                "the dashboard here and try again",
                op="dashboard",
            )
        if not csrf.single_cookies(call.environ):
            raise Forbidden(
                "dashboard error: this browser sends two cookies of the same name for this "
                "site (one may have been planted); clear this site's cookies and sign in again",
                op="dashboard",
            )
        if not csrf.valid(
            self.app.tokens.secret, self.csrf_binding(call), call.request.form.get("csrf")
        ):
            raise Forbidden(
                "dashboard error: this form expired or came from another site; reload the page",
                op="dashboard",
            )

    # -- sign-in --------------------------------------------------------------------------

    def sign_in_page(self, call: Call, status: int = 200, message: str = "") -> Answer:
        return self.render(
            call,
            "signin.html",
            status,
            message=message,
            next=_safe_next(call.args.get("next"), call.base),
        )

    def sign_in(self, call: Call) -> Answer:
        if self.app.auth != "jwt":
            return self.redirect(call.base + "/")
        form = call.request.form
        try:
            self.check_csrf(call)
            answer = self.app.signin.sign_in(
                form.get("username", ""),
                form.get("password", ""),
                address=self.app.client_address(call.environ),
            )
        except TooManyRequests as e:
            wait = max(1, math.ceil(e.retry_after or 1))
            page = self.sign_in_page(call, 429, f"Too many attempts; try again in {wait} s.")
            page.headers.append(("Retry-After", str(wait)))
            return page
        except DamasError as e:
            message = "Invalid username or password." if e.status == 401 else str(e)
            return self.sign_in_page(call, e.status, message)
        expires = answer.get("token_exp")
        max_age = int(expires - time.time()) if isinstance(expires, int | float) else None
        out = self.redirect(_safe_next(form.get("next"), call.base))
        out.headers.append(("Set-Cookie", _cookie(call, "token", answer["token"], max_age=max_age)))
        # a new nonce too: the one the sign-in form used (perhaps planted) dies here
        out.headers.append(
            ("Set-Cookie", _cookie(call, csrf.COOKIE, csrf.new_cookie(), max_age=None))
        )
        return out

    def sign_out(self, call: Call) -> Answer:
        self.check_csrf(call)
        token, _ = call.token()
        if token is not None and self.app.auth == "jwt":
            try:
                self.app.signin.sign_out(token)
            except Unauthorized:
                pass  # already invalid: signing out is done anyway
        out = self.redirect(call.base + "/signin")
        out.headers.append(("Set-Cookie", _cookie(call, "token", "", max_age=0)))
        out.headers.append(
            ("Set-Cookie", _cookie(call, csrf.COOKIE, csrf.new_cookie(), max_age=None))
        )
        return out

    # -- pages ----------------------------------------------------------------------------

    def files(self, call: Call, session: Any) -> Answer:
        args = call.args
        typed = args.get("q", "").strip()
        query = typed or "*"
        error = None
        try:
            filters = Filters(
                query=query,
                prefix=args.get("prefix", ""),
                states=tuple(s for s in args.getlist("state") if s),
                sites=tuple(s for s in args.getlist("site") if s),
                sort=args.get("sort", "_id") or "_id",
                skip=_whole(args.get("skip"), 0),
                after=args.get("after", ""),
                limit=_whole(args.get("limit"), 100),
            )
            data = files_page(session, filters, self.known_sites, self.counts, self.rows)
        except BadRequest as e:
            error = {"message": str(e), "position": e.position}
            filters = Filters()
            vols = self.known_sites.get()[0]
            data = {"sites": [v["name"] for v in vols], "shown": [], "files": [],
                    "volumes": vols, "skip": 0, "limit": 100, "next": None}  # fmt: skip
        stderr = {v["name"]: v.get("stderr_reception") or "" for v in data["volumes"]}
        links = {}
        if data["next"] is not None:
            links["next"] = _url(call, **{"after": None, "skip": None, **data["next"]})
        if filters.after or filters.skip:
            links["first"] = _url(call, after=None, skip=None)
        if filters.skip and not filters.after and not filters.states:
            links["previous"] = _url(call, skip=max(0, filters.skip - filters.limit))
        first_steps = None
        if not data["files"] and not error and filters == Filters():
            # an empty tracker: say what to do next (the store holds no file at all)
            first_steps = {"server": _server_url(call), "volumes": len(data["volumes"])}
        return self.render(
            call, "files.html", 400 if error else 200, session=session, data=data,
            first_steps=first_steps,
            filters=filters, query=typed, error=error, links=links, stderr=stderr,
            states=STATES, sorts=SORTS, volume_ids=[v["_id"] for v in data["volumes"]],
            file_rows=self.file_rows,
        )  # fmt: skip

    def folders(self, call: Call, session: Any) -> Answer:
        prefix = call.args.get("prefix", "/") or "/"
        data = self.counts.folders(prefix)
        crumbs = []
        parts = [p for p in data["prefix"].split("/") if p]
        for i, name in enumerate(parts):
            crumbs.append({"name": name, "prefix": "/" + "/".join(parts[: i + 1]) + "/"})
        return self.render(call, "folders.html", session=session, data=data, crumbs=crumbs)

    def sites(self, call: Call, session: Any) -> Answer:
        vols, params = self.known_sites.get()
        done = self.counts.completion()
        return self.render(
            call, "sites.html", session=session,
            health=[site_health(v, params) for v in vols],
            completion=done, eta=etas(done, vols),
            switches=SWITCHES, batches=BATCHES, message=call.args.get("done", ""),
            defaults=global_parameters(session),
        )  # fmt: skip

    def site(self, call: Call, session: Any) -> Answer:
        """One site: its agent, connection, capacity, transfers and ETA, and its log."""
        name = call.args.get("name", "")
        vols, params = self.known_sites.get()
        vol = next((v for v in vols if v.get("name") == name), None)
        if vol is None:
            raise NotFound(f"dashboard error: no site {name!r}", op="dashboard", id=name)
        done = self.counts.completion()
        events = activity.log(session, [vol["_id"]], limit=SITE_LOG, newest_first=True)
        return self.render(
            call, "site.html", session=session, h=site_health(vol, params),
            c=done[name], eta=etas(done, vols)[name], events=events, switches=SWITCHES,
        )  # fmt: skip

    def edit_site(self, call: Call, session: Any) -> Answer:
        form = call.request.form
        vid = form.get("volume", "")
        if vid not in {v["_id"] for v in self.known_sites.get()[0]}:
            raise NotFound(f"dashboard error: no volume {vid!r}", op="dashboard", id=vid)
        change: dict[str, Any] = {"_id": vid}
        for key in SWITCHES:
            change[key] = form.get(key) == "on"
        for key in BATCHES:
            raw = form.get(key, "").strip()
            if raw:
                change[key] = _whole(raw, 0, key=key)
        update_volume(session, change)
        return self.redirect(call.base + "/sites?done=" + quote(f"saved {vid}"))

    def file(self, call: Call, session: Any) -> Answer:
        file_id = call.args.get("id", "")
        element = session.read(file_id) if file_id.startswith("/") else None
        if element is None:
            raise NotFound(f"dashboard error: no file {file_id!r}", op="dashboard", id=file_id)
        vols, params = self.known_sites.get()
        names = [v["name"] for v in vols]
        row = row_of(element, names, params, in_flight(vols, params))
        children = session.search_elements(f'#parent:"{_quoted(file_id)}"', sort="time")
        versions = [c for c in children if _is_version(c)]
        comments = [c for c in children if not _is_version(c)]
        errors = {
            v["name"]: v.get("stderr_reception") or v.get("stderr_emission") or ""
            for v in vols
            if row["states"][v["name"]]["state"] == "error"
        }
        return self.render(
            call, "file.html", session=session, element=element, row=row, sites=names,
            comments=comments, versions=versions, errors=errors,
            roots={v["name"]: _root(v) for v in vols}, message=call.args.get("done", ""),
            volume_ids=[v["_id"] for v in vols],
        )  # fmt: skip

    def file_action(self, call: Call, session: Any) -> Answer:
        form = call.request.form
        file_id = form.get("id", "")
        action = form.get("action", "")
        site = form.get("site", "")
        if not file_id.startswith("/") or session.read(file_id) is None:
            raise NotFound(f"dashboard error: no file {file_id!r}", op="dashboard", id=file_id)
        if site and site not in {v["name"] for v in self.known_sites.get()[0]}:
            raise BadRequest(f"dashboard error: no site {site!r}", op="dashboard", key="site")
        done: Any
        if action == "lock":
            done = session.lock(file_id)
        elif action == "unlock":
            done = session.unlock(file_id, force=form.get("force") == "on")
        elif action == "comment":
            done = session.comment({"#parent": file_id, "comment": form.get("comment", "")})
        elif action == "retry" and site:
            done = session.update({"_id": file_id, f"syncError_{site}": None,
                                   f"syncFailures_{site}": None, f"syncLastAttempt_{site}": None})  # fmt: skip
        elif action == "priority":
            done = session.update(
                {"_id": file_id, "sync_priority": _whole(form.get("priority"), 0, key="priority")}
            )
        elif action == "sync" and site:
            value = {"on": True, "off": False, "default": None}.get(form.get("value", ""))
            if value is None and form.get("value") != "default":
                raise BadRequest(
                    "dashboard error: sync is on, off or default", op="dashboard", key="value"
                )
            done = session.update({"_id": file_id, f"sync_{site}": value})
        else:
            raise BadRequest(f"dashboard error: unknown action {action!r}", op="dashboard")
        if done is False or done is None:
            holder = (session.read(file_id) or {}).get("lock")
            reason = f"locked by {holder}" if holder else "nothing to undo"
            return self.render(
                call, "error.html", 409, session=session,
                message=f"{action} error: {reason}", back=f"{call.base}/file?id={quote(file_id, safe='')}",
            )  # fmt: skip
        return self.redirect(
            f"{call.base}/file?" + urlencode({"id": file_id, "done": f"{action}: done"})
        )

    def cells(self, call: Call, session: Any) -> Answer:
        ids = call.args.getlist("id")[:MAX_LIMIT]
        rows = rows_for(session, ids, self.known_sites)
        stderr = {v["name"]: v.get("stderr_reception") or "" for v in self.known_sites.get()[0]}

        out = {
            i: {
                "states": {s: parts(v, stderr.get(s, "")) for s, v in row["states"].items()},
                "lock": row["lock"],
            }
            for i, row in rows.items()
        }
        answer = self.answer(200, raw=orjson.dumps(out))
        answer.headers.extend(_security_headers())
        return answer


# -- helpers ------------------------------------------------------------------------------


def _security_headers() -> list[tuple[str, str]]:
    return [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
    ]


def _cookie(call: Call, name: str, value: str, *, max_age: int | None) -> str:
    parts = [f"{name}={value}", f"Path={call.base or '/'}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max(max_age, 0)}")
    if call.environ.get("wsgi.url_scheme") == "https":
        parts.append("Secure")
    return "; ".join(parts)


def _server_url(call: Call) -> str:
    """This server's address as the browser reached it (scheme, host, mount prefix)."""
    env = call.environ
    host = (
        env.get("HTTP_HOST")
        or f"{env.get('SERVER_NAME', 'localhost')}:{env.get('SERVER_PORT', '')}"
    )
    return f"{env.get('wsgi.url_scheme', 'http')}://{host}{call.base}"


def _here(call: Call) -> str:
    qs = call.environ.get("QUERY_STRING", "")
    return call.base + call.path + (f"?{qs}" if qs else "")


def _safe_next(value: str | None, base: str) -> str:
    r"""Where to go after signing in: a path on this server only, never another site
    (``//host``, ``/\host`` and ``/<tab>/host`` all name one: browsers drop tabs and
    newlines from a URL and read a backslash as a slash), else the dashboard's root.
    Characters beyond ASCII are percent-encoded, so the answer always fits in a header.

    >>> _safe_next("/file?id=/\u00e9t\u00e9.exr", ""), _safe_next("/\u3000/evil.com", "")
    ('/file?id=/%C3%A9t%C3%A9.exr', '/%E3%80%80/evil.com')
    >>> [_safe_next(v, "/d") for v in ("//evil", "/d//evil", "/d/\\evil", "https://evil", "/d/\x00")]
    ['/d/', '/d/', '/d/', '/d/', '/d/']
    """
    base = base or ""
    if (
        isinstance(value, str)
        and value.startswith(base + "/")
        and not value[len(base) :].startswith("//")
        and "\\" not in value
        and all(ch > " " and ch != "\x7f" for ch in value)
    ):
        return quote(value, safe="".join(chr(c) for c in range(0x21, 0x7F)))
    return base + "/"


def _url(call: Call, **changes: Any) -> str:
    """This page's address with ``changes`` to its arguments (``None``: left out)."""
    args = [(k, v) for k, v in call.args.items(multi=True) if k not in changes]
    args += [(k, str(v)) for k, v in changes.items() if v is not None]
    return call.base + "/?" + urlencode(args)


def _whole(raw: Any, default: int, *, key: str = "skip") -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(
            f"dashboard error: {key} must be a whole number, not {raw!r}", key=key
        ) from None
    return value


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _is_version(child: dict[str, Any]) -> bool:
    """True for an archived state (made by ``version``: a copy of the file's keys);
    comments and history entries (publish, scans) hold only author, time and comment."""
    return bool(set(child) - {"_id", "#parent", "author", "time", "comment"})


def _root(volume: dict[str, Any]) -> str:
    try:
        return endpoint_of(volume).root
    except DamasError:
        return ""


__all__ = ["CSP", "Dashboard"]
