"""A Python client for a damas-core HTTP server, with the API of a :class:`~damas_core.Session`.

:func:`connect` returns a :class:`Client` whose methods take the same arguments and
give the same results as the embedded library: one item in gives one result out, a
list gives a list with ``None`` holes, ``lock`` answers ``True``/``False``, and wrong
input raises the same exceptions (:class:`~damas_core.errors.BadRequest`,
:class:`~damas_core.errors.Unauthorized`, :class:`~damas_core.errors.Forbidden`, …),
chosen from the HTTP status. Code written against ``damas_core.open(url)`` runs
unchanged against ``connect(url)``.

It uses one ``requests.Session`` per client, so connections are kept alive and reused.

>>> from damas_core.client import connect
>>> tracker = connect("http://localhost:8090")                 # doctest: +SKIP
>>> tracker.sign_in("alice", "secret")["user"]["_id"]           # doctest: +SKIP
'@alice'
>>> tracker.read(["/shots/a.exr", "/missing"])                  # doctest: +SKIP
[{'_id': '/shots/a.exr', ...}, None]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import orjson
import requests

from damas_core.errors import (
    BadRequest,
    Conflict,
    DamasError,
    Forbidden,
    NotFound,
    NotImplementedByBackend,
    PayloadTooLarge,
    StorageError,
    TooManyRequests,
    TooManyStreams,
    Unauthorized,
)
from damas_core.operations.changes import check_arguments
from damas_core.wire import unpack_comments, unpack_published


class Unreachable(DamasError, ConnectionError):
    """The server did not answer (refused, timed out, name unknown)."""

    status = 0


ERRORS: dict[int, type[DamasError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: TooManyStreams,
    500: StorageError,
    501: NotImplementedByBackend,
}


def connect(
    url: str, token: str | None = None, *, timeout: float = 300.0, verify: bool = True
) -> Client:
    """A client for the server at ``url`` (``http://host:8090``; a trailing ``/api`` is
    fine), optionally with a token from an earlier sign-in.

    >>> connect("http://localhost:8090/api/").url
    'http://localhost:8090'
    """
    return Client(url, token, timeout=timeout, verify=verify)


def _count(items: Any, *, unfold: bool) -> int:
    """How many results a one-or-many argument gives (``_id`` lists unfold)."""
    if not isinstance(items, list | tuple):
        items = [items]
    if not unfold:
        return len(items)
    return sum(
        len(e["_id"]) if isinstance(e, dict) and isinstance(e.get("_id"), list) else 1
        for e in items
    )


def _single(items: Any, *, unfold: bool) -> bool:
    if isinstance(items, list | tuple):
        return False
    return not (unfold and isinstance(items, dict) and isinstance(items.get("_id"), list))


#: the longest ``/api/update/?expect=`` URL :meth:`Client.update` sends (nginx reads
#: 8 kB of request line by default)
EXPECT_URL_MAX = 6000


def _expect_path(expect: Any) -> str:
    return "/api/update/?expect=" + quote(orjson.dumps(expect).decode(), safe="")


def _expect_chunks(expect: list[Any]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the runs of ``expect`` whose URL stays under
    :data:`EXPECT_URL_MAX` (one expectation at least per run).

    >>> list(_expect_chunks([None] * 3))
    [(0, 3)]
    >>> len(list(_expect_chunks([{"time": 1_733_616_000_000}] * 1000))) > 1
    True
    """
    start, size = 0, len(_expect_path([]))
    for i, one in enumerate(expect):
        more = len(quote(orjson.dumps(one).decode(), safe="")) + 3  # and a comma
        if i > start and size + more > EXPECT_URL_MAX:
            yield start, i
            start, size = i, len(_expect_path([]))
        size += more
    yield start, len(expect)


class Client:
    """The tracker operations over HTTP; see :func:`connect`."""

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 300.0, verify: bool = True
    ) -> None:
        url = url.rstrip("/")
        if url.endswith("/api"):
            url = url[: -len("/api")]
        self.url = url
        self.timeout = timeout
        self.http = requests.Session()
        self.http.verify = verify
        self.http.headers["Accept"] = "application/json"
        self.token: str | None = None
        if token:
            self.use_token(token)

    def __repr__(self) -> str:
        return f"<Client {self.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()

    def use_token(self, token: str | None) -> None:
        """Send ``token`` with every request from now on (``None``: none)."""
        self.token = token
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        else:
            self.http.headers.pop("Authorization", None)

    # -- transport ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        op: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        allow: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; ``(status, decoded JSON)`` for 2xx and ``allow``ed statuses,
        the matching :class:`~damas_core.errors.DamasError` otherwise. ``timeout``
        (seconds) replaces the client's for this request."""
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout or self.timeout}
        if data is not None:
            kwargs["data"] = data
        elif body is not None or method in ("POST", "PUT", "DELETE"):
            try:
                kwargs["data"] = orjson.dumps(body)
            except (TypeError, orjson.JSONEncodeError) as e:
                raise BadRequest(f"{op} error: not JSON: {e}", op=op) from None
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            answer = self.http.request(method, self.url + path, **kwargs)
        except requests.ConnectionError as e:
            raise Unreachable(f"{op} error: cannot connect to {self.url}", op=op) from e
        except requests.Timeout as e:
            raise Unreachable(f"{op} error: {self.url} did not answer in time", op=op) from e
        status = answer.status_code
        try:
            payload = orjson.loads(answer.content) if answer.content else None
        except orjson.JSONDecodeError:
            payload = None if status >= 300 else answer.text
        if status < 300 or status in allow:
            return status, payload
        raise self.error(status, payload, op, answer)

    @staticmethod
    def error(
        status: int, payload: Any, op: str, answer: requests.Response | None = None
    ) -> DamasError:
        """The exception for an error answer."""
        message = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(message, str):
            text = answer.text[:200] if answer is not None else ""
            message = f"{op} error: HTTP {status}" + (f": {text}" if text else "")
        cls = ERRORS.get(status, StorageError if status >= 500 else DamasError)
        error = cls(message, op=op)
        if isinstance(error, Conflict) and isinstance(payload, dict):
            locked = payload.get("locked")
            if isinstance(locked, dict):
                error.locked = locked  # who holds what a refused lock or unlock asked for
        if cls is DamasError or (cls is StorageError and status != 500):
            error.status = status
        if isinstance(error, TooManyRequests) and answer is not None:
            try:
                error.retry_after = float(answer.headers.get("Retry-After", ""))
            except ValueError:
                pass
        return error

    def _many(self, method: str, path: str, op: str, items: Any, *, none: int, unfold: bool) -> Any:
        status, payload = self.request(method, path, op, items, allow=(none,))
        if status == none:
            return None if _single(items, unfold=unfold) else [None] * _count(items, unfold=unfold)
        return payload

    # -- CRUD -----------------------------------------------------------------------------

    def create(self, elements: Any) -> Any:
        """Create elements; ``None`` where the ``_id`` exists."""
        return self._many("POST", "/api/create/", "create", elements, none=409, unfold=True)

    @staticmethod
    def _check_ids(ids: Any, op: str) -> None:
        # The server takes numbers for ids (as damas-core did); the library does not.
        for i in ids if isinstance(ids, list | tuple) else [ids]:
            if isinstance(i, int | float) and not isinstance(i, bool):
                raise BadRequest(f"{op} error: an _id must be a non-empty string, not {i!r}", op=op)

    def read(self, ids: Any) -> Any:
        """Elements by id, ``None`` where absent."""
        self._check_ids(ids, "read")
        if ids == []:  # the server refuses an empty list; the library answers one
            return []
        return self._many("POST", "/api/read/", "read", ids, none=404, unfold=False)

    def update(
        self, elements: Any, *, expect: dict[str, Any] | list[dict[str, Any] | None] | None = None
    ) -> Any:
        """Set keys (``None`` removes one) on existing elements; ``None`` where absent.
        With ``expect``, only if the element holds those values (compare-and-set; for a
        list of elements, a list of expectations as long, ``None`` for none: sent in
        requests whose URL stays under :data:`EXPECT_URL_MAX` characters)."""
        if expect is None:
            return self._many("PUT", "/api/update/", "update", elements, none=404, unfold=True)
        if not (isinstance(expect, list) and isinstance(elements, list)) or len(expect) != len(
            elements
        ):  # one request: the server says what is wrong with it
            return self._many(
                "PUT", _expect_path(expect), "update", elements, none=409, unfold=True
            )
        out: list[Any] = []
        for start, end in _expect_chunks(expect):
            out += self._many(
                "PUT", _expect_path(expect[start:end]), "update", elements[start:end],
                none=409, unfold=True,
            )  # fmt: skip
        return out

    def upsert(self, elements: Any) -> Any:
        """Create or update; an ``_id`` absent or ``"null"`` creates with a fresh id."""
        return self._many("POST", "/api/upsert/", "upsert", elements, none=404, unfold=True)

    def delete(self, ids: Any) -> Any:
        """Delete elements and their links; the id or ``None``."""
        self._check_ids(ids, "delete")
        if ids == []:
            return []
        return self._many("DELETE", "/api/delete/", "delete", ids, none=404, unfold=False)

    # -- graph and search -----------------------------------------------------------------

    def graph(self, ids: Any, depth: int = 0) -> list[dict[str, Any] | None]:
        """Nodes then links, walking links from ``tgt_id`` back to ``src_id``; for a
        list of ids, ``None`` in the place of each one that does not exist."""
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise BadRequest(
                f"graph error: depth must be a whole number >= 0, not {depth!r}", op="graph"
            )
        self._check_ids(ids, "graph")
        if ids == []:
            return []
        status, payload = self.request("POST", f"/api/graph/{depth}/", "graph", ids, allow=(404,))
        if status != 404:
            return payload
        return [None] * len(dict.fromkeys(ids)) if isinstance(ids, list) else []

    @staticmethod
    def _query_text(query: Any, op: str) -> str:
        if isinstance(query, str):
            return query
        from damas_core.query.ast import Node

        if isinstance(query, Node):
            from damas_core.query.printer import to_text

            return to_text(query)
        raise BadRequest(f"{op} error: a query is a string, not {type(query).__name__}", op=op)

    def _search(self, op: str, query: Any, sort: Any, skip: int, limit: int | None) -> Any:
        params: dict[str, Any] = {}
        if sort is not None:
            params["sort"] = orjson.dumps(sort).decode()
        for name, value in (("skip", skip), ("limit", limit)):
            if value is None or (name == "skip" and value == 0 and not isinstance(value, bool)):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BadRequest(
                    f"{op} error: {name} must be a whole number >= 0, not {value!r}", op=op
                )
            params[name] = value
        text = self._query_text(query, op)
        return self.request("GET", f"/api/{op}/" + quote(text, safe=""), op, params=params)[1]

    def search(
        self, query: Any, sort: Any = None, skip: int = 0, limit: int | None = None
    ) -> list[str]:
        """Ids matching a query in the search language."""
        return self._search("search", query, sort, skip, limit)

    def search_elements(
        self, query: Any, sort: Any = None, skip: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The elements matching a query, in one request."""
        return self._search("search_elements", query, sort, skip, limit)

    def search_one(self, query: Any) -> dict[str, Any] | None:
        """The first element matching ``query``, or ``None``."""
        text = self._query_text(query, "search_one")
        return self.request("GET", "/api/search_one/" + quote(text, safe=""), "search_one")[1]

    def search_mongo(
        self, query: Any, sort: Any = None, limit: int = 0, skip: int = 0
    ) -> dict[str, Any]:
        """``{"count": N, "ids": [...]}`` for a MongoDB-style query dict."""
        body = {"query": query, "sort": sort, "limit": limit, "skip": skip}
        return self.request("POST", "/api/search_mongo/", "search_mongo", body)[1]

    # -- files ------------------------------------------------------------------------------

    def publish(self, elements: Any, *, with_history: bool = False) -> Any:
        """Track new files with their first history child; ``None`` if already tracked."""
        single = _single(elements, unfold=True)
        status, payload = self.request("POST", "/api/publish/", "publish", elements, allow=(409,))
        if status == 409:
            return None if single else [None] * _count(elements, unfold=True)
        pairs = unpack_published(payload)
        out = [None if p is None else (p if with_history else p[0]) for p in pairs]
        return out[0] if single else out

    def lock(self, ids: Any, *, strict: bool = False) -> bool:
        """Lock all ids for the caller, or none of them. With ``strict`` a refusal
        raises ``NotFound``, or ``Conflict`` whose ``locked`` names the holders."""
        self._check_ids(ids, "lock")
        if ids == []:
            return True
        allow = () if strict else (404, 409)
        status, _ = self.request("PUT", "/api/lock/", "lock", ids, allow=allow)
        return status == 200

    def unlock(self, ids: Any, force: bool = False, *, strict: bool = False) -> bool:
        """Unlock all ids the caller holds (any holder with ``force``, admins only);
        ``strict`` as for :meth:`lock`."""
        self._check_ids(ids, "unlock")
        if ids == []:
            return True
        params = {"force": "true"} if force else None
        allow = () if strict else (404, 409)
        status, _ = self.request("PUT", "/api/unlock/", "unlock", ids, params=params, allow=allow)
        return status == 200

    def comment(self, elements: Any) -> Any:
        """Attach comments to one or several parents."""
        status, payload = self.request("POST", "/api/comment/", "comment", elements, allow=(404,))
        return unpack_comments(payload if status != 404 else [], elements)

    def version(self, id: str, keys: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Archive the current state as a child and update the head; ``None`` if absent."""
        if not isinstance(id, str) or not id:
            raise BadRequest(
                f"version error: an _id must be a non-empty string, not {id!r}", op="version"
            )
        status, payload = self.request(
            "POST",
            "/api/version/" + quote(id, safe=""),
            "version",
            keys if keys is not None else {},
            allow=(404,),
        )
        return None if status == 404 else payload

    # -- accounts ---------------------------------------------------------------------------

    def sign_in(
        self, username: str, password: str, expires_in: int | str | None = None
    ) -> dict[str, Any]:
        """Sign in; returns ``{"token", "token_exp", "token_iat", "user"}`` and uses the
        token for the next requests. Raises ``Unauthorized`` on a wrong password."""
        form: dict[str, Any] = {"username": username, "password": password}
        if expires_in is not None:
            form["expiresIn"] = expires_in
        _, payload = self.request("POST", "/api/signIn/", "signIn", data=form)
        self.use_token(payload["token"])
        return payload

    def sign_out(self) -> bool:
        """Revoke the current token on the server and forget it."""
        try:
            self.request("POST", "/api/signOut/", "signOut", data={})
        finally:
            self.use_token(None)
        return True

    # -- the change feed ----------------------------------------------------------------

    def changes(
        self, since: int = 0, limit: int = 1000, *, elements: bool = False, wait: float = 0.0
    ) -> dict[str, Any]:
        """``{"last_seq", "changes": [{"seq", "_id", "deleted", "element"?}]}`` as
        :meth:`damas_core.tracker.Session.changes` gives it (``GET /api/changes/``);
        ``wait`` long-polls on the server (at most 60 s)."""
        # The library's checks and errors, before anything is sent.
        since, limit, elements, wait = check_arguments(since, limit, elements, wait)
        params: dict[str, Any] = {"since": since, "limit": limit}
        if elements:
            params["elements"] = "1"
        if wait:
            params["wait"] = f"{wait:g}"
        timeout = max(self.timeout, wait + 30.0)  # the server answers by the end of the wait
        return self.request("GET", "/api/changes/", "changes", params=params, timeout=timeout)[1]

    def verify(self) -> dict[str, Any]:
        """The signed-in user; raises ``Unauthorized`` if the token is missing or invalid."""
        return self.request("GET", "/api/verify/", "verify")[1]


__all__ = ["Client", "TooManyRequests", "Unreachable", "connect"]
