"""``sqlite://``: elements as JSON text in one SQLite table, searched with SQL (JSON1).

URLs: ``sqlite:///abs/path/store.db`` (absolute), ``sqlite://relative/store.db``
(relative to the working directory at open) and ``sqlite://:memory:`` (private to
this store object); ``~`` is expanded and missing directories are created. Options,
as keywords or in the query string (``sqlite:///srv/damas.db?indexes=type&timeout=30``): ``indexes`` (keys to index besides ``#parent``,
``src_id``, ``tgt_id``) and ``timeout`` (seconds a writer waits for another
process's write transaction, 10 by default; then the call fails with
:class:`~damas_core.errors.StorageError`).

Layout:

- ``elements(id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID``: one row per
  element, ``doc`` being its JSON text (written by orjson);
- ``element_index(key, value, id)``: one row per indexed key and scalar value of an
  element (each member of an array gets its own row; booleans are the blobs ``t`` and
  ``f`` so they never equal 0 and 1), written in the same transaction as the element;
- ``indexed_keys(key)``: the keys ``element_index`` holds. Every write transaction
  reads it and maintains all of them, so a process opened with fewer ``indexes``
  still keeps the others' index right; a store opened with more ``indexes`` adds them
  and fills their rows from the existing elements;
- ``changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, deleted, time)``:
  the change feed, one row per id at its latest seq, written in the same transaction
  as the element (``INSERT OR REPLACE`` moves an id's row to the next seq).
  ``AUTOINCREMENT`` keeps the counter in ``sqlite_sequence``, inside the database, so
  a seq is never given twice, by any process, even once its row is replaced or
  dropped; ``time`` is a tombstone's deletion time in milliseconds. ``feed_state``
  holds the horizon. A store created before the feed existed numbers its elements
  once, in ``_id`` order, when first opened.

Why a side table rather than expression indexes on ``json_extract(doc, '$."key"')``:
an expression index cannot index array members, and SQLite only uses it when the
query repeats the exact expression, literal JSON path included, whereas every path in
the compiled SQL is a bound parameter. An equality on an indexed key compiles to
``id IN (SELECT id FROM element_index WHERE key = ? AND value IN (?))``, answered
from the side table's primary key whether the value is a scalar or in an array.

Queries are compiled by :func:`damas_core.query.sql.to_sql` into one statement; the
whole search language runs in SQLite, so no result is filtered in Python.

Concurrency: the database is in WAL mode (readers never wait for a writer) with a
busy timeout; each write transaction is ``BEGIN IMMEDIATE``, so writers from any
number of processes queue instead of failing or losing updates. Within a process a
store object has one connection, used by one thread at a time under a re-entrant
lock: a thread inside ``transaction()`` keeps the store until it leaves the block.

>>> store = SQLiteStorage("sqlite://:memory:")
>>> store.insert_many([{"_id": "/a", "#parent": "/"}, {"_id": "/b", "#parent": "/a"}])
[True, True]
>>> from damas_core.query.ast import Eq
>>> store.find(Eq(("#parent",), "/a"))
['/b']
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from damas_core.backends.base import (
    Change,
    Element,
    Patch,
    Storage,
    apply_patch,
    index_values,
    now_ms,
    prefix_range,
)

from damas_core.elements import encode_all, id_of
from damas_core.errors import BadRequest
from damas_core.query.ast import Node, Sort
from damas_core.query.sql import BOOL_BLOBS, register_functions, to_sql, to_where

# SQLite limits the number of parameters of one statement (32766 since 3.32, 999 before).
_CHUNK = 900
_SCAN_BATCH = 1000

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS elements (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS indexed_keys (key TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS element_index (key TEXT NOT NULL, value NOT NULL, id TEXT NOT NULL,"
    " PRIMARY KEY (key, value, id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS feed_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
]
_FEED_SCHEMA = (
    "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    " deleted INTEGER NOT NULL, time INTEGER NOT NULL)"
)
_RECORD = "INSERT OR REPLACE INTO changes (id, deleted, time) VALUES (?, ?, ?)"
_RECORD_LIVE = "INSERT OR REPLACE INTO changes (id, deleted, time) VALUES " + ",".join(
    ["(?, 0, 0)"] * _CHUNK
)
_LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"
_HORIZON = "SELECT coalesce((SELECT value FROM feed_state WHERE key = 'horizon'), 0)"
_INT64 = (-(2**63), 2**63 - 1)
_INSERT_ELEMENT = "INSERT OR IGNORE INTO elements (id, doc) VALUES (?, ?)"
_INDEX_BATCH = 300  # rows per INSERT: 900 parameters, within every SQLite's limit
_INSERT_INDEX = "INSERT OR IGNORE INTO element_index (key, value, id) VALUES " + ",".join(
    ["(?, ?, ?)"] * _INDEX_BATCH
)
_INSERT_INDEX_ONE = "INSERT OR IGNORE INTO element_index (key, value, id) VALUES (?, ?, ?)"
_DELETE_INDEX = "DELETE FROM element_index WHERE key = ? AND value = ? AND id = ?"


def index_rows(element: Element, keys: Sequence[str]) -> list[tuple[str, Any, str]]:
    """The ``element_index`` rows of ``element`` for ``keys``: one per scalar value
    (see :func:`~damas_core.backends.base.index_values`), booleans as blobs.

    >>> index_rows({"_id": "/a", "#parent": "/", "tags": ["x", True]}, ["#parent", "tags"])
    [('#parent', '/', '/a'), ('tags', 'x', '/a'), ('tags', b't', '/a')]
    """
    id_ = element["_id"]
    rows = []
    for key in keys:
        v = element.get(key)
        if v is None:
            continue
        if type(v) is str:  # the common case, without the general helper
            rows.append((key, v, id_))
            continue
        for v in index_values(element, key):
            if type(v) is bool:
                v = BOOL_BLOBS[v]
            elif type(v) is int and not _INT64[0] <= v <= _INT64[1]:
                v = float(v)  # as SQLite's JSON1 reads it
            rows.append((key, v, id_))
    return rows


def _rows(elements: Sequence[Element], op: str) -> Iterator[tuple[str, str]]:
    """``(id, JSON)`` rows of ``elements``, made as they are written."""
    return zip(map(id_of, elements), map(bytes.decode, encode_all(elements, op)))


def database_path(url: str) -> tuple[str, dict[str, str]]:
    """The file (or ``:memory:``) a ``sqlite://`` URL names, and the options in its
    query string.

    >>> database_path("sqlite:///srv/damas.db?timeout=5")
    ('/srv/damas.db', {'timeout': '5'})
    >>> database_path("sqlite://rel/damas.db")
    ('rel/damas.db', {})
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise BadRequest(f"a SQLite store URL looks like 'sqlite:///path/store.db', not {url!r}")
    path = unquote(parts.netloc + parts.path)
    if path in ("", ":memory:", "/:memory:"):
        return ":memory:", dict(parse_qsl(parts.query))
    return os.path.expanduser(path), dict(parse_qsl(parts.query))


def insert_index_rows(conn: sqlite3.Connection, rows: Sequence[tuple[str, Any, str]]) -> None:
    """Write index rows, many per statement (about twice as fast as ``executemany``)."""
    full = len(rows) - len(rows) % _INDEX_BATCH
    flat = [x for r in rows[:full] for x in r]
    step = 3 * _INDEX_BATCH
    for i in range(0, len(flat), step):
        conn.execute(_INSERT_INDEX, flat[i : i + step])
    conn.executemany(_INSERT_INDEX_ONE, rows[full:])


def record_live(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Move each id's feed row to the next seq, in order, many rows per statement."""
    full = len(ids) - len(ids) % _CHUNK
    for i in range(0, full, _CHUNK):
        conn.execute(_RECORD_LIVE, ids[i : i + _CHUNK])
    conn.executemany(_RECORD, zip(ids[full:], repeat(0), repeat(0)))


class SQLiteStorage(Storage):
    """One SQLite database file; see the module docstring for layout and concurrency."""

    scheme = "sqlite"

    def __init__(self, url: str, **options: Any) -> None:
        self.path, query = database_path(url)
        options = {**query, **options}  # keyword options win over the query string
        super().__init__(url, **options)
        try:
            self.timeout = float(options.get("timeout", 10.0))
        except (TypeError, ValueError):
            raise BadRequest(
                f"sqlite option timeout must be a number of seconds, not {options['timeout']!r}"
            ) from None
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = self._connect()
        except sqlite3.Error as e:
            raise self.storage_error("open", e) from e

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions, BEGIN/COMMIT are ours.
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: a crash of the process never loses a commit; a power cut
                # may lose the last ones but never corrupts the database.
                conn.execute("PRAGMA synchronous = NORMAL")
            register_functions(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                if not conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'changes'"
                ).fetchone():
                    conn.execute(_FEED_SCHEMA)
                    conn.execute(
                        "INSERT INTO changes (id, deleted, time) SELECT id, 0, 0 FROM elements"
                        " ORDER BY id"
                    )
                for key in self.indexes:
                    self._add_index_key(conn, key)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _add_index_key(conn: sqlite3.Connection, key: str) -> None:
        if conn.execute("INSERT OR IGNORE INTO indexed_keys (key) VALUES (?)", (key,)).rowcount:
            # A new key: index the elements already stored.
            last = ""
            while batch := conn.execute(
                "SELECT id, doc FROM elements WHERE id > ? ORDER BY id LIMIT ?", (last, _SCAN_BATCH)
            ).fetchall():
                insert_index_rows(
                    conn, [r for _, d in batch for r in index_rows(orjson.loads(d), [key])]
                )
                last = batch[-1][0]

    def _index_keys(self) -> list[str]:
        """The keys to maintain, read inside the write transaction (any process may add one)."""
        return [k for (k,) in self._conn.execute("SELECT key FROM indexed_keys")]

    def _reindex(self, elements: Sequence[Element], keys: Sequence[str]) -> None:
        rows: list[tuple[str, Any, str]] = []
        for key in keys:
            holders = [e for e in elements if key in e]
            values = list(map(itemgetter(key), holders))
            if set(map(type, values)) <= {str}:  # the usual case, in bulk
                rows.extend(zip(repeat(key), values, map(id_of, holders)))
            else:
                rows.extend(r for e in holders for r in index_rows(e, [key]))
        insert_index_rows(self._conn, rows)

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _begin(self, statement: str) -> None:
        if self._conn.in_transaction:
            # Left open by a ROLLBACK that failed with the connection (a disk error):
            # whatever it held was never committed.
            self._conn.execute("ROLLBACK")
        self._conn.execute(statement)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, with one consistent snapshot for reads of several statements."""
        with self._lock:
            if self._depth:
                yield self._conn
                return
            self._begin("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    # -- primitives ----------------------------------------------------------------------

    def _docs(self, conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(ids))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT id, doc FROM elements WHERE id IN ({marks})", chunk))
        return found

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        with self._reading() as conn:
            found = self._docs(conn, ids)
        return [None if (doc := found.get(i)) is None else orjson.loads(doc) for i in ids]

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        ids = list(map(id_of, elements))
        out = [True] * len(ids)
        fresh = range(len(ids))
        if len(set(ids)) != len(ids):  # an id twice in the call: the first one wins
            seen: set[str] = set()
            for i, id_ in enumerate(ids):
                out[i] = id_ not in seen
                seen.add(id_)
            fresh = [i for i in fresh if out[i]]
        elements = [elements[i] for i in fresh] if len(fresh) < len(ids) else list(elements)
        with self._transaction():
            conn = self._conn
            # Optimistic: insert everything new to this call (JSON made as it is written:
            # an element that is not JSON raises, and the savepoint undoes the rest),
            # and only look for ids already stored if some row was ignored.
            conn.execute("SAVEPOINT damas_insert")
            try:
                before = conn.total_changes
                conn.executemany(_INSERT_ELEMENT, _rows(elements, op))
                if conn.total_changes - before != len(elements):
                    conn.execute("ROLLBACK TO damas_insert")
                    stored = self._ids(conn, [e["_id"] for e in elements])
                    for i in fresh:
                        if ids[i] in stored:
                            out[i] = False
                    elements = [e for e in elements if e["_id"] not in stored]
                    conn.executemany(_INSERT_ELEMENT, _rows(elements, op))
            except BaseException:
                conn.execute("ROLLBACK TO damas_insert")
                conn.execute("RELEASE damas_insert")
                raise
            conn.execute("RELEASE damas_insert")
            record_live(conn, list(map(id_of, elements)))
            self._reindex(elements, self._index_keys())
        return out

    @staticmethod
    def _ids(conn: sqlite3.Connection, ids: Iterable[str]) -> set[str]:
        unique = list(ids)
        found: set[str] = set()
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0] for r in conn.execute(f"SELECT id FROM elements WHERE id IN ({marks})", chunk)
            )
        return found

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        with self._transaction():
            docs = self._docs(self._conn, [p.id for p in patches])
            current: dict[str, Element] = {}
            old_rows: list[tuple[str, Any, str]] = []
            changed: dict[str, Element] = {}
            applied: list[str] = []  # each applied patch takes a seq, in order
            out: list[bool] = []
            keys = self._index_keys()
            for p in patches:
                element = current.get(p.id)
                if element is None:
                    raw = docs.get(p.id)
                    if raw is None:
                        out.append(False)
                        continue
                    element = current[p.id] = orjson.loads(raw)
                    old_rows += index_rows(element, keys)
                ok = apply_patch(element, p)
                if ok:
                    changed[p.id] = element
                    applied.append(p.id)
                out.append(ok)
            rows = [(orjson.dumps(e).decode(), i) for i, e in changed.items()]
            self._conn.executemany("UPDATE elements SET doc = ? WHERE id = ?", rows)
            record_live(self._conn, applied)
            # Only the index rows that differ are written (a lock touches none).
            old = {r for r in old_rows if r[2] in changed}
            new = {r for e in changed.values() for r in index_rows(e, keys)}
            self._conn.executemany(_DELETE_INDEX, old - new)
            insert_index_rows(self._conn, list(new - old))
            return out

    def _delete_many(self, ids: list[str]) -> list[bool]:
        with self._transaction():
            docs = self._docs(self._conn, ids)
            keys = self._index_keys()
            out: list[bool] = []
            gone: list[tuple[str]] = []
            old_rows: list[tuple[str, Any, str]] = []
            for i in ids:
                raw = docs.pop(i, None)
                out.append(raw is not None)
                if raw is not None:
                    gone.append((i,))
                    old_rows += index_rows(orjson.loads(raw), keys)
            self._conn.executemany("DELETE FROM elements WHERE id = ?", gone)
            self._conn.executemany(_DELETE_INDEX, old_rows)
            when = now_ms()
            self._conn.executemany(_RECORD, [(i, 1, when) for (i,) in gone])
            return out

    def _scan(self) -> Iterator[Element]:
        # Batches by key, so no lock or read transaction stays open while the caller
        # works on the elements.
        last = ""
        while True:
            with self._lock:
                batch = self._conn.execute(
                    "SELECT id, doc FROM elements WHERE id > ? ORDER BY id LIMIT ?",
                    (last, _SCAN_BATCH),
                ).fetchall()
            for _, doc in batch:
                yield orjson.loads(doc)
            if len(batch) < _SCAN_BATCH:
                return
            last = batch[-1][0]

    # -- the change feed -----------------------------------------------------------------

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT seq, id, deleted FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (since, limit + 1),
            ).fetchall()
            if len(rows) > limit:
                del rows[limit:]
                return rows[-1][0], [(s, i, bool(d)) for s, i, d in rows]
            return conn.execute(_LAST_SEQ).fetchone()[0], [(s, i, bool(d)) for s, i, d in rows]

    def _last_seq(self) -> int:
        with self._lock:
            return self._conn.execute(_LAST_SEQ).fetchone()[0]

    def _horizon(self) -> int:
        with self._lock:
            return self._conn.execute(_HORIZON).fetchone()[0]

    def _drop_tombstones(self, older_than_ms: int) -> int:
        with self._transaction():
            conn = self._conn
            count, top = conn.execute(
                "SELECT count(*), max(seq) FROM changes WHERE deleted = 1 AND time < ?",
                (older_than_ms,),
            ).fetchone()
            if count:
                conn.execute("DELETE FROM changes WHERE deleted = 1 AND time < ?", (older_than_ms,))
                conn.execute(
                    "INSERT INTO feed_state (key, value) VALUES ('horizon', ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = max(value, excluded.value)",
                    (top,),
                )
            return count

    # -- queries -------------------------------------------------------------------------

    def _find(self, query: Node, sort: Sort, skip: int, limit: int | None) -> list[str]:
        query = prefix_range(query)  # an _id prefix: a range of the primary key
        sql, params = to_sql(query, sort, skip, limit, indexed=self.indexes)
        with self._lock:
            return [row[0] for row in self._conn.execute(sql, params)]

    def _find_elements(
        self, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        query = prefix_range(query)
        sql, params = to_sql(query, sort, skip, limit, indexed=self.indexes, columns=("doc",))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def _count(self, query: Node) -> int:
        where, params = to_where(prefix_range(query), indexed=self.indexes)
        with self._lock:
            return self._conn.execute(
                f"SELECT count(*) FROM elements WHERE {where}", params
            ).fetchone()[0]

    def _ensure_index(self, key: str) -> None:
        with self._transaction():
            self._add_index_key(self._conn, key)

    def query_plan(self, query: Node) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` lines for ``find(query)``: which indexes it uses."""
        sql, params = to_sql(prefix_range(query), indexed=self.indexes)
        with self._lock:
            return [row[-1] for row in self._conn.execute("EXPLAIN QUERY PLAN " + sql, params)]

    def _close(self) -> None:
        with self._lock:
            self._conn.close()


__all__ = ["SQLiteStorage", "database_path"]
