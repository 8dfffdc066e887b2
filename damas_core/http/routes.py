"""The route table of the HTTP API: which handler answers which method and path, and
what the OpenAPI document says of it.

Paths are damas-core 2.x's. Every route is one :class:`Route`, written with keyword
arguments; the application (:mod:`damas_core.http.app`) dispatches on :data:`ROUTES`
and the OpenAPI document (:mod:`damas_core.http.openapi`) is generated from it, so
both always agree.

>>> [r.method + " " + r.path for r in ROUTES if r.op == "read"]
['GET /api/read/{ids}', 'POST /api/read/']
>>> [route.op for route, params in match("/api/read/%2Fa")]
['read']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from damas_core.http import handlers as h
from damas_core.http.messages import Answer, Call


@dataclass(frozen=True, kw_only=True)
class Route:
    """One route: method, OpenAPI path template and handler, plus what the document says.

    ``body`` names the body form (a key of :data:`damas_core.http.openapi.BODIES`),
    ``result`` the success payload (a key of :data:`damas_core.http.openapi.RESULTS`),
    ``ok`` the success statuses and ``errors`` the error statuses the route can answer.
    ``public`` routes need no signed-in user; ``query`` names the query-string arguments.
    """

    method: str
    path: str
    handler: Callable[[Call], Answer]
    op: str
    summary: str
    body: str | None = None
    result: str = "element"
    ok: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = (400, 401, 403)
    public: bool = False
    query: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _compile(self.path))


def _compile(template: str) -> re.Pattern[str]:
    """A regex over the raw (still percent-encoded) path. ``{depth}`` is one segment;
    other parameters take the rest of the path (ids may hold encoded slashes). ``{ids}``
    may be empty, so that ``GET /api/read/`` reaches its handler and is refused as an
    empty id list (400) rather than answered 405. A trailing slash is optional, as in
    damas-core's Express routes."""
    regex = ""
    for part in re.split(r"(\{\w+\})", template):
        if part.startswith("{"):
            name = part[1:-1]
            regex += {
                "depth": "(?P<depth>[^/]+)",
                "query": "(?P<query>.*)",
                "ids": "(?P<ids>.*)",
            }.get(name, f"(?P<{name}>.+)")
        else:
            regex += re.escape(part)
    if template.endswith("/"):
        regex = regex[:-1] + "/?"
    elif template.endswith("{depth}"):
        regex += "/?"
    return re.compile("^" + regex + "$")


_IDS = (400, 401, 403, 413)
_WRITE = (400, 401, 403, 413)
_GRAPH = "Nodes and links reached from ids (depth 0: unlimited)"

ROUTES: tuple[Route, ...] = (
    Route(method="POST", path="/api/create/", handler=h.create, op="create",
          summary="Create elements", body="elements", result="elements",
          ok=(201, 207), errors=(*_WRITE, 409)),
    Route(method="GET", path="/api/read/{ids}", handler=h.read_url, op="read",
          summary="Read elements by id (comma-separated)", result="elements",
          ok=(200, 207), errors=(400, 401, 403, 404)),
    Route(method="POST", path="/api/read/", handler=h.read_body, op="read",
          summary="Read elements by id", body="ids", result="elements",
          ok=(200, 207), errors=(*_IDS, 404)),
    Route(method="PUT", path="/api/update/", handler=h.update, op="update",
          summary="Set or remove keys of elements", body="elements", result="elements",
          ok=(200, 207), errors=(*_WRITE, 404, 409), query=("expect",)),
    Route(method="POST", path="/api/upsert/", handler=h.upsert, op="upsert",
          summary="Create or update elements", body="elements", result="elements",
          errors=_WRITE),
    Route(method="DELETE", path="/api/delete/", handler=h.delete, op="delete",
          summary="Delete elements and their links", body="ids", result="ids",
          ok=(200, 207), errors=(*_IDS, 404)),
    Route(method="GET", path="/api/graph/{depth}/{ids}", handler=h.graph_url, op="graph",
          summary=_GRAPH, result="graph", ok=(200, 207), errors=(400, 401, 403, 404)),
    Route(method="POST", path="/api/graph/{depth}", handler=h.graph_body, op="graph",
          summary=_GRAPH, body="ids", result="graph", ok=(200, 207), errors=(*_IDS, 404)),
    Route(method="GET", path="/api/search/{query}", handler=h.search, op="search",
          summary="Ids matching a query", result="id_list", query=("sort", "skip", "limit")),
    Route(method="GET", path="/api/search_elements/{query}", handler=h.search_elements,
          op="search_elements",
          summary="The elements matching a query (search, then read, in one request)",
          result="element_list", query=("sort", "skip", "limit")),
    Route(method="GET", path="/api/search_one/{query}", handler=h.search_one, op="search_one",
          summary="The first element matching a query, or null", result="element_or_null"),
    Route(method="POST", path="/api/search_mongo/", handler=h.search_mongo, op="search_mongo",
          summary="Ids matching a MongoDB-style query, with the total count",
          body="search_mongo", result="count_ids", errors=(*_IDS, 501)),
    Route(method="POST", path="/api/publish/", handler=h.publish, op="publish",
          summary="Track new files; answers the files then their history children",
          body="files", result="elements", ok=(201, 207), errors=(*_WRITE, 409)),
    Route(method="PUT", path="/api/lock/", handler=h.lock, op="lock",
          summary="Lock elements for the caller (all or none)", body="ids", result="true",
          errors=(*_IDS, 404, 409)),
    Route(method="PUT", path="/api/unlock/", handler=h.unlock, op="unlock",
          summary="Unlock elements (all or none)", body="ids", result="true",
          errors=(*_IDS, 404, 409), query=("force",)),
    Route(method="POST", path="/api/comment/", handler=h.comment, op="comment",
          summary="Comment on elements", body="comments", result="elements",
          ok=(201, 207), errors=(*_WRITE, 404)),
    Route(method="POST", path="/api/version/{id}", handler=h.version, op="version",
          summary="Archive an element's state as a child and update it", body="keys",
          result="element", ok=(201,), errors=(*_WRITE, 404)),
    Route(method="GET", path="/api/changes/", handler=h.changes, op="changes",
          summary="What changed since a position of the change feed (wait: long-poll)",
          result="changes", errors=(400, 401, 403, 503),
          query=("since", "limit", "elements", "wait")),
    Route(method="GET", path="/api/events/", handler=h.events, op="events",
          summary="The change feed as Server-Sent Events", result="events",
          errors=(400, 401, 403, 503), query=("since", "elements")),
    Route(method="POST", path="/api/signIn/", handler=h.sign_in, op="signIn",
          summary="Sign in: a token and the user", body="signin", result="signin",
          errors=(400, 401, 413, 429), public=True),
    Route(method="POST", path="/api/signOut/", handler=h.sign_out, op="signOut",
          summary="Revoke the token of this request", result="true", errors=(401, 403),
          public=True),
    Route(method="GET", path="/api/verify/", handler=h.verify, op="verify",
          summary="The signed-in user", result="user", errors=(401,)),
    Route(method="GET", path="/api/openapi.json", handler=h.openapi_document, op="openapi",
          summary="This OpenAPI document", result="openapi", errors=(), public=True),
)  # fmt: skip


def _section(path: str) -> str:
    """``/api/read/…`` → ``read``: routes are grouped by it so a request tries few."""
    parts = path.split("/", 3)
    return parts[2] if len(parts) > 2 and parts[1] == "api" else ""


_BY_SECTION: dict[str, list[Route]] = {}
for _route in ROUTES:
    _BY_SECTION.setdefault(_section(_route.path), []).append(_route)


def match(path: str) -> list[tuple[Route, dict[str, str]]]:
    """Every route whose path matches the raw ``path``, with its raw parameters."""
    found = []
    for route in _BY_SECTION.get(_section(path), ()):
        m = route.pattern.match(path)
        if m:
            found.append((route, m.groupdict()))
    return found


__all__ = ["ROUTES", "Route", "match"]
