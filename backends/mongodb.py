r"""``mongodb://`` and ``mongomock://``: elements as documents of one MongoDB collection.

URLs:

- ``mongodb://host:port/db?collection=node`` opens database ``db`` (default
  ``damas``) and collection ``collection`` (default ``node``) with pymongo. Any other
  query parameter is a pymongo connection option (``replicaSet``, ``authSource``...).
  Option ``timeout_ms`` (or ``?timeout_ms=``, default 3000) bounds server selection, so
  an unreachable server is a quick :class:`~damas_core.errors.StorageError` naming
  its address.
- ``mongomock://`` runs the same class on an in-memory ``mongomock`` server, for tests.
  A bare ``mongomock://`` gets a fresh private server at each open. Any other form,
  ``mongomock:///db?collection=node`` or ``mongomock://name/db``, names a server
  (``name``, or the unnamed one) that lives as long as the process: opening the same
  URL again finds the data again, as with a real server.

Elements keep their string ``_id`` as MongoDB's ``_id`` (never an ObjectId). The
search AST runs natively (:func:`damas_core.query.mongo.to_mongo`), sorted, skipped
and limited by the server. A regex goes to the server only where its engine answers
as RE2 does, in linear time (a literal, perhaps anchored: :func:`server_query`); an
anchored literal prefix (``_id:/^\/shots\//``) becomes a range on the key, served by
its index; any other regex is decided by RE2 in this process over the candidates the
rest of the query allows, so no pattern can take more than linear time (option
``native_regex=True`` lets a trusted deployment run them all on the server). Indexes
on ``#parent``, ``src_id``, ``tgt_id`` and the ``indexes`` option are created at open.

Every list of ids sent in one command (``$in``) is cut in batches of at most
``batch_bytes`` (option, default 8 MiB; :func:`id_batches`): MongoDB refuses a command
over 16 MiB, which 300 000 ids of 60 characters would be.

Atomicity: on a replica set or sharded cluster (detected at open with ``hello``), a
transaction block is a MongoDB multi-document transaction. On a standalone server and
on mongomock there are no transactions: the block keeps an undo log (the prior state
of every element it touched) and, if the block raises, restores each element that is
still as the block left it, key by key (a key another writer changed since keeps
their value; an element another writer changed or re-created since stays theirs); other threads of the process wait, but other processes may see the block's writes before it ends, and a
process killed mid-block leaves them behind (``atomic`` is then ``False``). A guarded
patch (``Patch.expect``) is one atomic compare-and-set on every server.

The change feed: the collection ``<collection>.changes`` holds one document per id,
``{_id, seq, deleted, time}`` (indexed by ``seq``), and ``<collection>.feed`` the
counter (``{_id: "seq", value, pending}``) and the horizon. With transactions, a
block's changes are numbered just before it commits, inside it: the counter document
is written by one transaction at a time (MongoDB aborts a concurrent one with a
transient write conflict, and a primitive outside a block is then run again), so seq
order is commit order and a reader never sees a seq before a lower one. Without
transactions a writer reserves its seqs before writing, with a compare-and-set on the
counter that also lists the reservation in ``pending``, and removes it once the
elements and their feed entries are written. A reader stops below the lowest pending
reservation, so it never moves past a seq whose write is not visible yet; a
reservation older than ``feed_grace_ms`` (option, default 30000) is taken for a
writer that died and is dropped, and readers move on (what such a writer wrote
before dying may then be missed).

>>> from damas_core.backends.mongodb import MongoStorage
>>> from damas_core.query.ast import Cmp
>>> store = MongoStorage("mongomock://")
>>> store.insert_many([{"_id": "/a", "n": 1}])
[True]
>>> store.find(Cmp(("n",), ">", 0))
['/a']
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import pymongo.errors
from damas_core.backends.base import (
    Change,
    Element,
    Patch,
    Storage,
    literal_head,
    now_ms,
    prefix_span,
    select,
)
from pymongo import ReturnDocument

from damas_core.elements import encode
from damas_core.errors import DamasError, NotImplementedByBackend, StorageError
from damas_core.ordering import MISSING
from damas_core.query.ast import All, And, Eq, In, Node, Not, Or, Regex, Sort, walk
from damas_core.query.mongo import field_name, to_mongo, to_mongo_sort

DEFAULT_DATABASE = "damas"
DEFAULT_COLLECTION = "node"
DEFAULT_TIMEOUT_MS = 3000
DEFAULT_FEED_GRACE_MS = 30_000
#: Bytes of ids one command may carry (MongoDB refuses a command over 16 MiB).
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024
T = TypeVar("T")
_TRANSIENT = "TransientTransactionError"
_RETRIES = 20  # runs of a primitive that meets transient write conflicts

# Named mongomock servers shared within the process: "name" -> mongomock ServerStore.
_MOCK_SERVERS: dict[str, Any] = {}
_MOCK_SERVERS_LOCK = threading.Lock()


def _json_copy(element: Mapping[str, Any]) -> Element:
    """A deep copy through JSON: what is stored is JSON, never a caller's object."""
    return orjson.loads(orjson.dumps(element))


def _check_keys(keys: Any, id: str) -> None:
    # A top-level key with a dot or a leading $ would be read by MongoDB as a path
    # or an operator in updates and filters, so it is refused before any write.
    for key in keys:
        if "." in key or key.startswith("$"):
            raise NotImplementedByBackend(
                f"storage error: the key {key!r} of {id!r} cannot be stored on MongoDB "
                "(keys with '.' or a leading '$')",
                id=id,
                key=key,
            )


def _expect_filter(expect: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Filter clauses that hold exactly when every ``expect`` key has its value."""
    clauses: list[dict[str, Any]] = []
    for key, wanted in (expect or {}).items():
        name = field_name((key,))
        if wanted is MISSING:
            clauses.append({name: {"$exists": False}})
            continue
        clauses.append({name: wanted})
        if not isinstance(wanted, list | dict):
            # {k: v} also matches an array holding v; a guard wants the value itself.
            clauses.append({name: {"$not": {"$type": "array"}}})
        if wanted is None:  # {k: null} also matches a missing key
            clauses.append({name: {"$exists": True}})
        elif isinstance(wanted, bool | int | float):  # true is not 1 in JSON
            clauses.append({name: {"$type": "bool" if isinstance(wanted, bool) else "number"}})
    return clauses


def id_batches(ids: Sequence[str], limit_bytes: int) -> Iterator[list[str]]:
    """``ids`` in order, cut into lists whose BSON array (as in ``{"$in": [...]}``) takes
    at most ``limit_bytes`` bytes; an id longer than that alone goes in a list of its own.

    MongoDB refuses a command over 16 MiB: one ``$in`` of 300 000 ids of 60 characters
    is 20.8 MiB.

    >>> [len(b) for b in id_batches(["/a" * 10] * 5, 70)]
    [2, 2, 1]
    """
    batch: list[str] = []
    size = 5  # the array's length prefix and terminator
    for id_ in ids:
        # an element: type byte, its index as a C string, length prefix, UTF-8, NUL
        cost = 7 + len(str(len(batch))) + len(id_.encode("utf-8", "surrogatepass"))
        if batch and size + cost > limit_bytes:
            yield batch
            batch, size = [], 5
            cost = 8 + len(id_.encode("utf-8", "surrogatepass"))
        batch.append(id_)
        size += cost
    if batch:
        yield batch


def _exact_on_server(node: Regex) -> bool:
    """True when a server's regex engine answers ``node`` as RE2 does, in linear time:
    a literal (``\\/``, ``\\xHH`` escapes), perhaps anchored by ``^`` and ``$``, without
    the ``i`` or ``m`` flag (case folding and line anchors differ between engines)."""
    if {"i", "m"} & set(node.flags):
        return False
    start = 1 if node.pattern.startswith("^") else 0
    text, end = literal_head(node.pattern, start)
    return node.pattern[end:] in ("", "$") and "\x00" not in text


def _prefix_range(node: Regex) -> Node | None:
    """A range on ``node``'s key holding every string ``node`` matches, from the literal
    its pattern is anchored to; ``None`` when it is anchored to none."""
    pattern = node.pattern
    if not pattern.startswith("^") or {"i", "m"} & set(node.flags) or "|" in pattern:
        return None
    text, end = literal_head(pattern, 1)
    if pattern[end : end + 1] in ("?", "*", "{"):  # the last character is optional
        text = text[:-1]
    if not text:
        return None
    return prefix_span(node.path, text)


def server_query(node: Node) -> tuple[Node, bool]:
    """The query to send the server for ``node``, and whether its answer is exact.

    A regex the server answers as RE2 does stays (:func:`_exact_on_server`), an
    anchored literal prefix on ``_id`` becomes its range (``_id`` is always a string).
    Any other regex is relaxed so that the server's answer holds every match: where it
    counts for a match it becomes the range of its anchored prefix, or ``All()``;
    under an odd number of ``Not`` it becomes ``Not(All())``. The answer is then not
    exact, and RE2 decides over those candidates.

    >>> server_query(And((Eq(("a",), 1), Not(Regex(("b",), "x+")))))
    (And(nodes=(Eq(path=('a',), value=1), Not(node=Not(node=All())))), False)
    >>> server_query(Regex(("_id",), "^/s/"))
    (And(nodes=(Cmp(path=('_id',), op='>=', value='/s/'), Cmp(path=('_id',), op='<', value='/s0'))), True)
    """
    exact = True

    def relax(n: Node, positive: bool) -> Node:
        nonlocal exact
        if isinstance(n, Regex):
            prefix = _prefix_range(n)
            if _exact_on_server(n):
                if n.path == ("_id",) and prefix is not None and not n.pattern.endswith("$"):
                    return prefix
                return n
            exact = False
            if positive:
                return All() if prefix is None else prefix
            return Not(All())
        if isinstance(n, Not):
            return Not(relax(n.node, not positive))
        if isinstance(n, And | Or):
            return type(n)(tuple(relax(m, positive) for m in n.nodes))
        return n

    out = relax(node, True)
    return out, exact


def _same(a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> bool:
    """True when ``key`` holds the same JSON in ``a`` and ``b`` (``true`` is not ``1``)."""
    if (key in a) != (key in b):
        return False
    return key not in a or orjson.dumps(a[key]) == orjson.dumps(b[key])


def _mongomock_deviates(query: Node) -> bool:
    """True when mongomock answers ``query`` differently from a real MongoDB server.

    mongomock compares with Python's ``==`` (so ``true`` equals ``1``) and misses a
    ``null`` match on a dotted path whose parent is not an object; such queries are
    answered on mongomock by the Python predicate over a scan instead.
    """
    for node in walk(query):
        if isinstance(node, Eq | In):
            values = (node.value,) if isinstance(node, Eq) else node.values
            for v in values:
                if isinstance(v, bool | int | float) or (v is None and len(node.path) > 1):
                    return True
    return False


class MongoStorage(Storage):
    """One MongoDB collection; see the module docstring for URLs and guarantees."""

    scheme = "mongodb"

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        self.scheme = parts.scheme.lower()  # type: ignore[misc] - mongodb or mongomock
        collection = str(options.get("collection") or params.pop("collection", DEFAULT_COLLECTION))
        timeout_ms = int(options.get("timeout_ms") or params.pop("timeout_ms", DEFAULT_TIMEOUT_MS))
        self.feed_grace_ms = int(
            options.get("feed_grace_ms") or params.pop("feed_grace_ms", DEFAULT_FEED_GRACE_MS)
        )
        self.batch_bytes = int(
            options.get("batch_bytes") or params.pop("batch_bytes", DEFAULT_BATCH_BYTES)
        )
        for name in ("collection", "timeout_ms", "feed_grace_ms", "batch_bytes"):
            params.pop(name, None)
        self.address = parts.netloc.rpartition("@")[2] or "(in-memory)"
        self._local = threading.local()
        self._lock = threading.RLock()
        self._mock = self.scheme == "mongomock"
        self.shared = not self._mock  # type: ignore[misc] - a mongomock server is in memory
        # Regexes run on RE2 in this process unless the server may run them: MongoDB's
        # PCRE (and mongomock's re) backtrack, so a hostile pattern could take forever.
        self._native_regex = bool(options.get("native_regex")) and not self._mock
        try:
            if self._mock:
                import mongomock

                name = parts.netloc
                if name or parts.path.strip("/") or parts.query:
                    with _MOCK_SERVERS_LOCK:
                        server = _MOCK_SERVERS.setdefault(name, mongomock.store.ServerStore())
                    self._client = mongomock.MongoClient(_store=server)
                else:
                    self._client = mongomock.MongoClient()
                db_name = parts.path.strip("/") or DEFAULT_DATABASE
                self._native_tx = False
            else:
                import pymongo

                client_url = urlunsplit(parts._replace(query=urlencode(params)))
                self._client = pymongo.MongoClient(
                    client_url,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=timeout_ms,
                    document_class=dict,
                    tz_aware=False,
                )
                db_name = parts.path.strip("/") or DEFAULT_DATABASE
                hello = self._client.admin.command("hello")
                # Transactions need a replica set member or a mongos router.
                self._native_tx = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            self._collection = self._client[db_name][collection]
            for key in self.indexes:
                self._collection.create_index(field_name((key,)))
            self._changes_coll = self._client[db_name][collection + ".changes"]
            self._state = self._client[db_name][collection + ".feed"]
            self._changes_coll.create_index("seq", unique=True)
            self._number_existing()
        except DamasError:
            raise
        except Exception as e:
            raise self.storage_error("open", e) from e
        # Without server transactions, other processes can see a block's writes early.
        self.atomic = self._native_tx  # type: ignore[misc]

    # -- errors -------------------------------------------------------------------------

    def storage_error(self, op: str, error: BaseException) -> StorageError:
        """A ``StorageError`` naming the operation and the server address."""
        return StorageError(
            f"MongoStorage {op.lstrip('_')} failed on server {self.address}: "
            f"{type(error).__name__}: {error}",
            op=op,
        )

    # -- helpers ------------------------------------------------------------------------

    @property
    def _session(self) -> Any:
        """The client session of this thread's native transaction, or ``None``."""
        return getattr(self._local, "session", None)

    def _undoing(self) -> bool:
        """True inside a block that keeps an undo log (no server transactions)."""
        return getattr(self._local, "undo", None) is not None

    def _remember(self, id: str, prior: Element | None, written: Element | None) -> None:
        """Undo log: an element's state before this block first touched it, and the
        state the block left it in (``None``: absent)."""
        local = self._local
        if getattr(local, "undo", None) is not None:
            local.undo.setdefault(id, prior)
            local.written[id] = written

    def _find_ids(self, ids: Sequence[str], fields: Any = None) -> Iterator[dict[str, Any]]:
        """The stored documents with these ids, one ``$in`` per :func:`id_batches`."""
        for batch in id_batches(ids, self.batch_bytes):
            yield from self._collection.find({"_id": {"$in": batch}}, fields, session=self._session)

    # -- primitives ---------------------------------------------------------------------

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        unique = list(dict.fromkeys(ids))
        found = {d["_id"]: d for d in self._find_ids(unique)}
        out: list[Element | None] = []
        given: set[str] = set()
        for i in ids:
            doc = found.get(i)
            # A repeated id gets its own copy, so results never share a dict.
            out.append(copy.deepcopy(doc) if doc is not None and i in given else doc)
            given.add(i)
        return out

    def _retried(self, step: Callable[[], T]) -> T:
        """Run one primitive, again when a server transaction of its own met a
        transient write conflict (another writer held the feed counter); inside a
        block the conflict goes to the caller, who may run the block again."""
        for attempt in range(_RETRIES):
            try:
                return step()
            except pymongo.errors.PyMongoError as e:
                nested = getattr(self._local, "depth", 0)
                if nested or not e.has_error_label(_TRANSIENT) or attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        return self._retried(lambda: self._insert(elements, op))

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        return self._retried(lambda: self._patch(patches))

    def _delete_many(self, ids: list[str]) -> list[bool]:
        return self._retried(lambda: self._delete(ids))

    def _insert(self, elements: Sequence[Element], op: str) -> list[bool]:
        out = [False] * len(elements)
        todo: dict[str, tuple[int, Element]] = {}
        for index, element in enumerate(elements):
            copy = orjson.loads(encode(element, op))  # what is stored is JSON, not the caller's
            _check_keys(copy, element["_id"])
            todo.setdefault(element["_id"], (index, copy))
        if not todo:
            return out
        with self._transaction():
            session = self._session
            # Skip ids already stored: a duplicate-key error would abort a transaction.
            present = {d["_id"] for d in self._find_ids(list(todo), {"_id": 1})}
            batch = [(i, doc) for id_, (i, doc) in todo.items() if id_ not in present]
            if not batch:
                return out
            failed: set[int] = set()
            error: Exception | None = None
            with self._numbering(len(batch)) as changed:
                try:
                    self._collection.insert_many(
                        [d for _, d in batch], ordered=False, session=session
                    )
                except pymongo.errors.BulkWriteError as e:
                    for write_error in e.details.get("writeErrors", []):
                        failed.add(write_error["index"])
                        if write_error.get("code") != 11000:  # a race on the same id: False
                            error = e
                for k, (i, doc) in enumerate(batch):
                    if k not in failed:
                        out[i] = True
                        self._remember(doc["_id"], None, doc)
                        changed.append((doc["_id"], False))
            if error is not None:
                raise error
            return out

    def _patch(self, patches: Sequence[Patch]) -> list[bool]:
        out: list[bool] = []
        with self._transaction(), self._numbering(len(patches)) as changed:
            session = self._session
            for p in patches:
                _check_keys([*p.set, *p.unset], p.id)
                filt: dict[str, Any] = {"_id": p.id}
                clauses = _expect_filter(p.expect)
                if clauses:
                    filt = {"$and": [filt, *clauses]}
                update: dict[str, Any] = {}
                if p.set:
                    update["$set"] = _json_copy(p.set)
                unset = [k for k in p.unset if k not in p.set]  # set wins, as apply_patch
                if unset:
                    update["$unset"] = dict.fromkeys(unset, "")
                if not update:
                    out.append(
                        self._collection.find_one(filt, {"_id": 1}, session=session) is not None
                    )
                    continue
                # The guard is in the filter: check and write are one atomic step.
                prior = self._collection.find_one_and_update(
                    filt, update, return_document=ReturnDocument.BEFORE, session=session
                )
                if prior is not None:
                    if self._undoing():
                        after = {k: v for k, v in prior.items() if k not in unset}
                        self._remember(p.id, prior, {**after, **update.get("$set", {})})
                    changed.append((p.id, False))
                out.append(prior is not None)
        return out

    def _delete(self, ids: list[str]) -> list[bool]:
        out: list[bool] = []
        with self._transaction(), self._numbering(len(ids)) as changed:
            for i in ids:
                prior = self._collection.find_one_and_delete({"_id": i}, session=self._session)
                if prior is not None:
                    self._remember(i, prior, None)
                    changed.append((i, True))
                out.append(prior is not None)
        return out

    def _scan(self) -> Iterator[Element]:
        yield from self._collection.find({}, session=self._session).sort("_id", 1)

    def _find(self, query: Node, sort: Sort, skip: int, limit: int | None) -> list[str]:
        return [d["_id"] for d in self._query(query, sort, skip, limit, ids_only=True)]

    def _find_elements(
        self, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        return self._query(query, sort, skip, limit, ids_only=False)

    def _query(
        self, query: Node, sort: Sort, skip: int, limit: int | None, *, ids_only: bool
    ) -> list[Element]:
        """Matching documents (only ``_id`` with ``ids_only``), sorted, skipped, limited."""
        if self._mock and _mongomock_deviates(query):
            return select(self._scan(), query, sort, skip, limit)
        session = self._session
        filt, exact = self._filter(query)
        if not exact:
            candidates = self._collection.find(filt, session=session)
            return select(candidates, query, sort, skip, limit)
        if sort and self._sort_needs_python(filt, sort):
            keys = {key.split(".")[0]: 1 for key, _ in sort} if ids_only else None
            docs = self._collection.find(filt, keys, session=session)
            return select(docs, All(), sort, skip, limit)
        cursor = self._collection.find(filt, {"_id": 1} if ids_only else None, session=session)
        cursor = cursor.sort(to_mongo_sort(sort)).skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return list(cursor)

    def _sort_needs_python(self, filt: dict[str, Any], sort: Sort) -> bool:
        """True when a matching element holds an array or an object on a sort path.

        MongoDB sorts an array by its smallest (or largest) member and compares
        objects field type first, where :func:`damas_core.ordering.sort_key` puts
        arrays in their own bracket and compares key names first; those rare sorts
        are done in Python so every backend gives the same order.
        """
        clauses: list[dict[str, Any]] = []
        for key, _ in sort:
            parts = tuple(key.split("."))
            for end in range(1, len(parts) + 1):
                clauses.append({field_name(parts[:end]): {"$type": "array"}})
            clauses.append({field_name(parts): {"$type": "object"}})
        probe = {"$and": [filt, {"$or": clauses}]}
        return self._collection.find_one(probe, {"_id": 1}, session=self._session) is not None

    def _filter(self, query: Node) -> tuple[dict[str, Any], bool]:
        """The filter to send for ``query``, and whether the server's answer is exact
        (else RE2 decides over it: :func:`server_query`)."""
        if self._native_regex or not any(isinstance(n, Regex) for n in walk(query)):
            return to_mongo(query), True
        relaxed, exact = server_query(query)
        return to_mongo(relaxed), exact

    def _count(self, query: Node) -> int:
        if self._mock and _mongomock_deviates(query):
            return len(select(self._scan(), query, (), 0, None))
        filt, exact = self._filter(query)
        if not exact:
            candidates = self._collection.find(filt, session=self._session)
            return len(select(candidates, query, (), 0, None))
        return self._collection.count_documents(filt, session=self._session)

    def _ensure_index(self, key: str) -> None:
        self._collection.create_index(field_name((key,)))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            local = self._local
            if getattr(local, "depth", 0):
                local.depth += 1
                try:
                    yield
                finally:
                    local.depth -= 1
                return
            local.depth = 1
            try:
                if self._native_tx:
                    with self._client.start_session() as session, session.start_transaction():
                        local.session = session
                        local.changes = []
                        yield  # start_transaction commits on a clean exit, aborts otherwise
                        if local.changes:  # numbered last: the counter is held briefly
                            self._write_feed(local.changes, self._take(len(local.changes)))
                else:
                    local.undo, local.written = {}, {}
                    try:
                        yield
                    except BaseException:
                        self._rollback(local.undo, local.written)
                        raise
            finally:
                local.depth = 0
                local.session = None
                local.undo = local.written = None
                local.changes = None

    def _rollback(
        self, undo: dict[str, Element | None], written: dict[str, Element | None]
    ) -> None:
        """Put every element the failed block touched back as it was, newest first, each
        only where it is still as the block left it: this is a compare-and-set on what
        the block wrote, so a write another process made meanwhile is never undone.
        Others may have seen the block's writes: undoing them are changes too."""
        collection = self._collection
        with self._numbering(len(undo)) as changed:
            for id_, prior in reversed(list(undo.items())):
                mine = written[id_]
                if mine is None:
                    if prior is not None:
                        try:  # unless another writer made the id again meanwhile
                            collection.insert_one(prior)
                        except pymongo.errors.DuplicateKeyError:
                            continue
                        changed.append((id_, False))
                    continue
                if prior is None:  # only if exactly as written: same keys, same values
                    guard = _expect_filter({k: v for k, v in mine.items() if k != "_id"})
                    size = {"$size": {"$objectToArray": "$$ROOT"}}
                    guard.append({"$expr": {"$eq": [size, len(mine)]}})
                    done = collection.delete_one({"$and": [{"_id": id_}, *guard]}).deleted_count
                    if done:
                        changed.append((id_, True))
                    continue
                # key by key, each only if it still holds what the block wrote
                undone = 0
                for key in (k for k in {**prior, **mine} if not _same(prior, mine, k)):
                    if key in prior:
                        update: dict[str, Any] = {"$set": {key: prior[key]}}
                    else:
                        update = {"$unset": {key: ""}}
                    guard = [{"_id": id_}, *_expect_filter({key: mine.get(key, MISSING)})]
                    undone += collection.update_one({"$and": guard}, update).modified_count
                if undone:  # one change per id: the reservation holds one seq each
                    changed.append((id_, False))

    # -- the change feed ----------------------------------------------------------------

    @contextmanager
    def _numbering(self, most: int) -> Iterator[list[tuple[str, bool]]]:
        """A list for the ``(id, deleted)`` changes of one primitive (at most ``most``),
        in order. In a transaction they are numbered at its commit; without, ``most``
        seqs are reserved first and the changes written to the feed once done."""
        local = self._local
        if getattr(local, "changes", None) is not None:
            yield local.changes
            return
        changed: list[tuple[str, bool]] = []
        first = self._reserve(most) if most else 0
        try:
            yield changed
        finally:
            if most:
                try:
                    self._write_feed(changed, first)
                finally:
                    self._release(first, most, len(changed))

    def _take(self, count: int) -> int:
        """The first of ``count`` new seqs, taken inside this thread's transaction."""
        doc = self._state.find_one_and_update(
            {"_id": "seq"},
            {"$inc": {"value": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=self._session,
        )
        return int(doc["value"]) - count + 1

    def _reserve(self, count: int) -> int:
        """The first of ``count`` new seqs, listed as pending until released (no
        transactions: a compare-and-set on the counter document)."""
        while True:
            doc = self._state.find_one({"_id": "seq"})
            if doc is None:
                try:
                    self._state.insert_one({"_id": "seq", "value": 0, "pending": []})
                except pymongo.errors.DuplicateKeyError:  # another process made it first
                    pass
                continue
            value = int(doc["value"])
            token = {"first": value + 1, "last": value + count, "t": now_ms()}
            done = self._state.update_one(
                {"_id": "seq", "value": value},
                {"$set": {"value": value + count}, "$push": {"pending": token}},
            )
            if done.modified_count:
                return value + 1

    def _release(self, first: int, most: int, used: int) -> None:
        """End a reservation; give back its unused seqs when none was reserved after."""
        pull = {"$pull": {"pending": {"first": first}}}
        if used < most:
            last = first + most - 1
            done = self._state.update_one(
                {"_id": "seq", "value": last}, {"$set": {"value": first + used - 1}, **pull}
            )
            if done.modified_count:
                return
        self._state.update_one({"_id": "seq"}, pull)

    def _write_feed(self, changed: list[tuple[str, bool]], first: int) -> None:
        """Each change takes the next seq from ``first``; an id keeps its last one."""
        if not changed:
            return
        when = now_ms()
        latest = {id_: (first + k, dead) for k, (id_, dead) in enumerate(changed)}
        docs = [
            {"_id": id_, "seq": seq, "deleted": dead, "time": when if dead else 0}
            for id_, (seq, dead) in latest.items()
        ]
        session, feed = self._session, self._changes_coll
        # Replace each id's entry in two bulk steps (no upserts in bulk on every driver).
        for batch in id_batches(list(latest), self.batch_bytes):
            feed.delete_many({"_id": {"$in": batch}}, session=session)
        try:
            feed.insert_many(docs, ordered=False, session=session)
        except pymongo.errors.BulkWriteError as e:
            # Another writer put an entry for the same id meanwhile: the higher seq wins.
            for error in e.details.get("writeErrors", []):
                if error.get("code") != 11000:
                    raise
                doc = docs[error["index"]]
                try:
                    feed.replace_one(
                        {"_id": doc["_id"], "seq": {"$lt": doc["seq"]}}, doc, upsert=True
                    )
                except pymongo.errors.DuplicateKeyError:
                    pass

    def _stable(self) -> int:
        """The position a reader may advance to: the counter, or just below the lowest
        pending reservation (one older than the grace period is dropped first)."""
        while True:
            doc = self._state.find_one({"_id": "seq"}, session=self._session)
            if doc is None:
                return 0
            pending = doc.get("pending") or []
            if not pending:
                return int(doc["value"])
            low = min(pending, key=lambda t: t["first"])
            if low["t"] >= now_ms() - self.feed_grace_ms:
                return int(low["first"]) - 1
            self._state.update_one({"_id": "seq"}, {"$pull": {"pending": {"first": low["first"]}}})

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        stable = self._stable()  # read first: what is below it is visible after
        docs = list(
            self._changes_coll.find({"seq": {"$gt": since, "$lte": stable}}, session=self._session)
            .sort("seq", 1)
            .limit(limit + 1)
        )
        out = [(int(d["seq"]), d["_id"], bool(d["deleted"])) for d in docs[:limit]]
        return (out[-1][0] if len(docs) > limit else stable), out

    def _last_seq(self) -> int:
        return self._stable()

    def _horizon(self) -> int:
        doc = self._state.find_one({"_id": "horizon"}, session=self._session)
        return 0 if doc is None else int(doc["value"])

    def _drop_tombstones(self, older_than_ms: int) -> int:
        old = {"deleted": True, "time": {"$lt": older_than_ms}}
        top = self._changes_coll.find_one(old, sort=[("seq", -1)], session=self._session)
        if top is None:
            return 0
        self._state.update_one(
            {"_id": "horizon"}, {"$max": {"value": int(top["seq"])}}, upsert=True
        )
        return self._changes_coll.delete_many(
            {**old, "seq": {"$lte": top["seq"]}}, session=self._session
        ).deleted_count

    def _number_existing(self) -> None:
        """A collection filled before the feed existed: number its elements once, in
        ``_id`` order (whoever makes the counter document does it)."""
        if self._state.find_one({"_id": "seq"}) is not None:
            return
        ids = [d["_id"] for d in self._collection.find({}, {"_id": 1}).sort("_id", 1)]
        try:
            self._state.insert_one({"_id": "seq", "value": len(ids), "pending": []})
        except pymongo.errors.DuplicateKeyError:  # another process made it first
            return
        self._write_feed([(i, False) for i in ids], 1)

    def _close(self) -> None:
        self._client.close()


def drop_database(url: str, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Remove the database ``url`` names from its server, with every store in it; a
    named ``mongomock://`` server is forgotten once it holds no database. There is no
    undo: this is for test suites and tear-downs.

    >>> store = MongoStorage("mongomock://doc/gone")
    >>> store.insert_many([{"_id": "/a"}])
    [True]
    >>> drop_database("mongomock://doc/gone")
    >>> MongoStorage("mongomock://doc/gone").get("/a") is None
    True
    """
    parts = urlsplit(url)
    db_name = parts.path.strip("/") or DEFAULT_DATABASE
    if parts.scheme.lower() == "mongomock":
        import mongomock

        with _MOCK_SERVERS_LOCK:
            server = _MOCK_SERVERS.get(parts.netloc)
            if server is None:
                return
            client = mongomock.MongoClient(_store=server)
            client.drop_database(db_name)
            if not server.list_created_database_names():
                del _MOCK_SERVERS[parts.netloc]
        return
    import pymongo

    ours = ("collection", "timeout_ms", "feed_grace_ms", "batch_bytes")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ours])
    client = pymongo.MongoClient(
        urlunsplit(parts._replace(query=query)), serverSelectionTimeoutMS=timeout_ms
    )
    try:
        client.drop_database(db_name)
    finally:
        client.close()


__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "MongoStorage",
    "drop_database",
    "id_batches",
    "server_query",
]
