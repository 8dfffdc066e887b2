"""The HTTP handlers: one thin function per route.

Each handler parses what the request carries (path, query string, JSON body), calls
one method of the caller's :class:`~damas_core.Session`, and says how to encode the
result. Every rule about elements, users and permissions lives in the core; this
module only knows the damas-core 2.x wire format:

- ids in a URL are comma-separated and percent-decoded once, so ``%2C`` is a comma
  inside an id and ``%2F`` a slash;
- a JSON body may be one item or an array; one item gives one result, an array an
  array; a bare JSON string is a valid id body and numbers are taken as ids too;
- the status says how a multi-item call went (:func:`outcome`): all done → 200 (201
  for create, publish, comment, version), some ``null`` → 207 with the array, all
  ``null`` → 404 (409 for create and publish);
- ``publish`` answers with the created file elements followed by their history
  children, and ``comment`` with the flat list of created comments.

The route table that maps requests to these handlers is :mod:`damas_core.http.routes`.

>>> outcome([{"_id": "a"}, None], ok=201, none=409)
207
>>> id_body([1, "b"])
['1', 'b']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from damas_core.errors import BadRequest, Conflict, DamasError, NotFound
from damas_core.http.messages import Answer, Call
from damas_core.operations.changes import check_arguments
from damas_core.wire import pack_comments, pack_published

# -- status rules ------------------------------------------------------------------------


def outcome(result: Any, *, ok: int = 200, none: int = 404) -> int:
    """The status for a result: ``ok`` when nothing failed, 207 when some items are
    ``None``, ``none`` when every item (or the single result) is ``None``."""
    if result is None:
        return none
    if isinstance(result, list) and result:
        holes = sum(1 for r in result if r is None)
        if holes == len(result):
            return none
        if holes:
            return 207
    return ok


_REASONS = {404: "not found", 409: "every item already exists"}


def results(
    op: str, result: Any, *, ok: int = 200, none: int = 404, reason: str | None = None
) -> Answer:
    """Encode a one-or-many result with the multi-status rules of :func:`outcome`;
    ``reason``: what the error says when every item is ``None``."""
    status = outcome(result, ok=ok, none=none)
    if status == none and none >= 400:
        reason = reason or ("not found" if none == 404 else _REASONS.get(none, "failed"))
        raise _status_error(none)(f"{op} error: {reason}", op=op)
    return Answer(status, result)


def _status_error(status: int) -> type[DamasError]:
    return {404: NotFound, 409: Conflict}.get(status, DamasError)


# -- request parts -----------------------------------------------------------------------


def decode(raw: str, op: str) -> str:
    """Percent-decode one URL part once, as UTF-8; 400 on invalid UTF-8."""
    try:
        return unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(
            f"{op} error: the URL is not valid UTF-8 once percent-decoded", op=op
        ) from None


def url_ids(call: Call, name: str = "ids") -> str | list[str]:
    """The comma-separated ids of a path parameter: one id gives a str, several a list,
    none (``/api/read/``) an empty list (which :func:`some_ids` refuses)."""
    raw = call.params[name]
    if raw == "":
        return []
    ids = [decode(part, call.op) for part in raw.split(",")]
    return ids[0] if len(ids) == 1 else ids


def id_body(value: Any) -> Any:
    """An ids body as damas-core takes it: numbers stand for their decimal string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return [id_body(v) for v in value]
    return value


def some_ids(ids: Any, op: str) -> Any:
    """``ids`` unless it is an empty list: damas-core answers 400 to a request naming
    no id (``GET /api/read/``, ``POST /api/read/ []``, ``DELETE /api/delete/ []``,
    ``PUT /api/lock/ []`` …), where the library gives an empty result for an empty list.

    >>> some_ids([], "read")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: read error: no ids given (an empty list)
    """
    if isinstance(ids, list) and not ids:
        raise BadRequest(f"{op} error: no ids given (an empty list)", op=op)
    return ids


def whole(value: Any, name: str, op: str, default: int | None = 0) -> int | None:
    """A whole number >= 0 from JSON or a query string (``None``/``""`` → ``default``)."""
    if value is None or value == "":
        return default
    if isinstance(value, str) and re.fullmatch(r"\d{1,18}", value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadRequest(f"{op} error: {name} must be a whole number >= 0, not {value!r}", op=op)


#: The spellings of a boolean query-string argument (any case).
TRUE_WORDS = ("", "1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def flag(value: str | None, name: str, op: str) -> bool:
    """A boolean query-string argument: absent is false; ``1``, ``true``, ``yes``,
    ``on`` or present-and-empty is true; ``0``, ``false``, ``no``, ``off`` is false
    (any case); anything else is a 400 naming it, never taken for false.

    >>> flag("TRUE", "elements", "changes"), flag(None, "elements", "changes")
    (True, False)
    >>> flag("maybe", "elements", "changes")
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: changes error: elements must be 1, true, yes, on (or empty) or 0, false, no, off, not 'maybe'
    """
    if value is None:
        return False
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRequest(
        f"{op} error: {name} must be 1, true, yes, on (or empty) or 0, false, no, off, "
        f"not {value!r}",
        op=op,
        key=name,
    )


def sort_arg(value: str | None) -> Any:
    """A ``sort`` query-string argument: JSON when it parses, else the plain text."""
    if value is None or value == "":
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


# -- handlers: CRUD ------------------------------------------------------------------------


def create(call: Call) -> Answer:
    return results("create", call.session.create(call.body()), ok=201, none=409)


def read_url(call: Call) -> Answer:
    return results("read", call.session.read(some_ids(url_ids(call), "read")))


def read_body(call: Call) -> Answer:
    return results("read", call.session.read(some_ids(id_body(call.body()), "read")))


def update(call: Call) -> Answer:
    raw = call.args.get("expect")
    if raw is None:
        return results("update", call.session.update(call.body()))
    try:
        expect = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(
            "update error: expect is JSON: an object of keys and values, or a list of them",
            op="update",
            key="expect",
        ) from None
    # compare-and-set: an element that does not hold what was expected is a conflict
    # (207 with null for those of a list)
    return results(
        "update",
        call.session.update(call.body(), expect=expect),
        none=409,
        reason="the element is missing or does not hold what was expected",
    )


def upsert(call: Call) -> Answer:
    return results("upsert", call.session.upsert(call.body()))


def delete(call: Call) -> Answer:
    return results("delete", call.session.delete(some_ids(id_body(call.body()), "delete")))


# -- handlers: graph and search ----------------------------------------------------------


def _graph(call: Call, ids: Any) -> Answer:
    some_ids(ids, "graph")
    depth = whole(decode(call.params["depth"], "graph"), "depth", "graph")
    nodes = call.session.graph(ids, depth)
    # A list of ids gives each distinct one its place, null where it does not exist:
    # damas-core answers 207 with those nulls, 404 when none exists.
    given = nodes[: len(dict.fromkeys(ids))] if isinstance(ids, list) else nodes[:1]
    if not given or all(n is None for n in given):
        raise NotFound("graph error: not found", op="graph")
    return Answer(207 if None in given else 200, nodes)


def graph_url(call: Call) -> Answer:
    return _graph(call, url_ids(call))


def graph_body(call: Call) -> Answer:
    return _graph(call, id_body(call.body()))


def _search(call: Call, op: str) -> Answer:
    args = call.args
    found = getattr(call.session, op)(
        decode(call.params["query"], op),
        sort=sort_arg(args.get("sort")),
        skip=whole(args.get("skip"), "skip", op),
        limit=whole(args.get("limit"), "limit", op, None),
    )
    return Answer(200, found)


def search(call: Call) -> Answer:
    return _search(call, "search")


def search_elements(call: Call) -> Answer:
    return _search(call, "search_elements")


def search_one(call: Call) -> Answer:
    return Answer(200, call.session.search_one(decode(call.params["query"], "search_one")))


#: The keys of a search_mongo body.
SEARCH_MONGO_KEYS = ("query", "sort", "limit", "skip")


def search_mongo_body(body: Any, parse_json: Any) -> dict[str, Any]:
    """A search_mongo body checked: ``{query, sort, limit, skip}`` (``query``
    required), or damas-core's form post ``{"queryobj": "<that object as JSON>"}``.
    Anything else is a ``BadRequest`` naming the unknown keys, so that a typo is not
    read as "no filter" (every element).

    >>> search_mongo_body({"queryobj": '{"query": {"a": 1}}'}, orjson.loads)
    {'query': {'a': 1}}
    >>> search_mongo_body({"qeury": {"a": 1}}, orjson.loads)
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: search_mongo error: unknown key 'qeury' in the body: it holds query, sort, limit, skip (or queryobj, that object as a JSON string)
    """
    op = "search_mongo"
    shape = "it holds query, sort, limit, skip (or queryobj, that object as a JSON string)"
    if isinstance(body, dict) and set(body) == {"queryobj"}:
        if not isinstance(body["queryobj"], str):
            raise BadRequest(f"{op} error: queryobj must be a JSON string", op=op)
        body = parse_json(body["queryobj"].encode())
    if not isinstance(body, dict):
        raise BadRequest(f"{op} error: the body is an object: {shape}", op=op)
    unknown = [k for k in body if k not in SEARCH_MONGO_KEYS]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise BadRequest(
            f"{op} error: unknown key{'s' * (len(unknown) > 1)} {names} in the body: {shape}",
            op=op,
            key=unknown[0],
        )
    if "query" not in body:
        raise BadRequest(f"{op} error: the body needs a query ({{}} for every element)", op=op)
    return body


def _search_mongo_request(call: Call) -> Any:
    """The body as JSON, or damas-core's HTML-form post ``queryobj=<the object as JSON>``
    (URL-encoded) as ``{"queryobj": …}``: a JSON body never starts that way."""
    data = call.data()
    if not data.startswith(b"queryobj="):
        return call.body()
    try:
        form = parse_qs(data.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("search_mongo error: the form is not UTF-8", op="search_mongo") from None
    if set(form) != {"queryobj"} or len(form["queryobj"]) != 1:
        names = ", ".join(repr(k) for k in form if k != "queryobj") or "'queryobj' twice"
        raise BadRequest(
            f"search_mongo error: a form post holds queryobj alone, not {names}",
            op="search_mongo",
        )
    return {"queryobj": form["queryobj"][0]}


def search_mongo(call: Call) -> Answer:
    body = search_mongo_body(_search_mongo_request(call), call.parse_json)
    found = call.session.search_mongo(
        body["query"],
        sort=body.get("sort"),
        limit=whole(body.get("limit"), "limit", "search_mongo"),
        skip=whole(body.get("skip"), "skip", "search_mongo"),
    )
    return Answer(200, found)


# -- handlers: files -------------------------------------------------------------------------


def publish(call: Call) -> Answer:
    pairs = call.session.publish(call.body(), with_history=True)
    pair_list = pairs if isinstance(pairs, list) else [pairs]
    files = [p[0] if p is not None else None for p in pair_list]
    status = outcome(files if isinstance(pairs, list) else files[0], ok=201, none=409)
    if status == 409:
        raise Conflict("publish error: every file is already tracked", op="publish")
    return Answer(status, pack_published(pair_list))


def lock(call: Call) -> Answer:
    # strict: a refusal raises NotFound, or Conflict whose body names the holders
    ids = some_ids(id_body(call.body()), "lock")
    return Answer(200, call.session.lock(ids, strict=True))


def unlock(call: Call) -> Answer:
    force = flag(call.args.get("force"), "force", "unlock")
    ids = some_ids(id_body(call.body()), "unlock")
    return Answer(200, call.session.unlock(ids, force=force, strict=True))


def comment(call: Call) -> Answer:
    flat = pack_comments(call.session.comment(call.body()))
    status = outcome(flat, ok=201, none=404)
    if status == 404:
        raise NotFound("comment error: no such parent", op="comment")
    return Answer(status, flat)


def version(call: Call) -> Answer:
    body = call.body(required=False)
    if body is not None and not isinstance(body, dict):
        raise BadRequest("version error: the body is a JSON object of keys to set", op="version")
    head = call.session.version(decode(call.params["id"], "version"), body)
    if head is None:
        raise NotFound("version error: not found", op="version")
    return Answer(201, head)


# -- handlers: the change feed ------------------------------------------------------------


def seconds(value: Any, name: str, op: str) -> float:
    """A number of seconds from a query string (``None``/``""`` → 0)."""
    if value is None or value == "":
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise BadRequest(
            f"{op} error: {name} must be a number of seconds, not {value!r}", op=op, key=name
        ) from None


def changes(call: Call) -> Answer:
    args = call.args
    since = whole(args.get("since"), "since", "changes")
    limit = whole(args.get("limit"), "limit", "changes", 1000)
    elements = flag(args.get("elements"), "elements", "changes")
    wait = seconds(args.get("wait"), "wait", "changes")
    # Checked before anything is read: a bad argument is a 400, never after a wait.
    since, limit, elements, wait = check_arguments(since, limit, elements, wait)
    answer = call.session.changes(since, limit, elements=elements)
    if wait <= 0 or answer["changes"] or answer.get("reset"):
        return Answer(200, stream=json_pieces(answer))
    stream = call.app.streams.poll(
        call.session, call.environ, answer["last_seq"], limit=limit, elements=elements, wait=wait
    )
    return Answer(200, stream=stream, content_type=stream.content_type)


#: Feed entries encoded per piece of a streamed answer.
PIECE = 16


def json_pieces(answer: dict[str, Any]) -> Iterator[bytes]:
    """The JSON of a change feed answer, :data:`PIECE` entries at a time, so that an
    answer of many large elements is never one more copy in memory (``changes`` first,
    then the other keys).

    >>> b"".join(json_pieces({"last_seq": 3, "changes": [{"seq": 3}], "more": True}))
    b'{"changes":[{"seq":3}],"last_seq":3,"more":true}'
    """
    changes = answer["changes"]
    yield b'{"changes":['
    for start in range(0, len(changes), PIECE):
        piece = orjson.dumps(changes[start : start + PIECE])[1:-1]
        yield b"," + piece if start else piece
    rest = orjson.dumps({k: v for k, v in answer.items() if k != "changes"})
    yield b"]," + rest[1:]


def events(call: Call) -> Answer:
    # A browser reconnecting sends the id of the last event it received.
    last_event = call.environ.get("HTTP_LAST_EVENT_ID", "").strip()
    since = whole(last_event or call.args.get("since"), "since", "events", None)
    if since is None:  # from now on
        since = call.session.storage.last_seq()
    call.session.changes(since, 1)  # a bad position is a 400 before the stream opens
    stream = call.app.streams.events(
        call.session,
        call.environ,
        since,
        elements=flag(call.args.get("elements"), "elements", "events"),
    )
    return Answer(
        200,
        stream=stream,
        content_type=stream.content_type,
        headers=[("X-Accel-Buffering", "no")],  # nginx: pass events on as they come
    )


# -- handlers: accounts ------------------------------------------------------------------------


def sign_in(call: Call) -> Answer:
    return call.app.sign_in(call)


def sign_out(call: Call) -> Answer:
    return call.app.sign_out(call)


def verify(call: Call) -> Answer:
    return Answer(200, call.session.user)


def openapi_document(call: Call) -> Answer:
    return Answer(200, raw=call.app.openapi(call.base))


__all__ = [
    "decode",
    "flag",
    "id_body",
    "outcome",
    "results",
    "search_mongo_body",
    "some_ids",
    "sort_arg",
    "url_ids",
    "whole",
]
