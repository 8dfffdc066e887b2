"""``postgresql://``: elements in a PostgreSQL table, searched with SQL/JSON paths.

URLs: ``postgresql://user:password@host:port/dbname`` (``postgres://`` too), with
options in the query string or as keywords: ``schema`` (the schema holding the
store's tables, ``public`` by default: one database can hold several stores),
``indexes`` (top-level keys whose ranges come from B-tree expression indexes; the GIN
index below already serves equality on every key) and ``connect_timeout`` (seconds, 10 by default). Any other
query parameter goes to libpq (``sslmode=require``, ...). The driver is psycopg 3
(``pip install 'damas-core[postgresql]'``).

Layout (in the store's schema):

- ``elements(id text COLLATE "C" PRIMARY KEY, raw text, doc jsonb, lossy boolean)``:
  ``raw`` is the element's JSON text as written (orjson), returned as is, so an
  element reads back exactly, key order and ``\\u0000`` included; ``doc`` is the same
  value as ``jsonb``, which every search runs on. ``jsonb`` keeps keys in its own
  order and cannot hold ``\\u0000`` in a string: an element whose JSON holds one
  stores ``doc`` with U+FFFD in its place and ``lossy`` true, and a search checks
  such rows with the Python predicate (they are found through a partial index).
  ``id`` in the ``"C"`` collation orders by code point, so ``_id`` order, an ``_id``
  comparison and an ``_id`` prefix (a range) come from the primary key.
- a GIN ``jsonb_path_ops`` index on ``doc``: equality on any key or dotted path, array
  members included, is an index lookup.
- for each key declared in ``indexes`` (or by :meth:`ensure_index`), besides the
  default ones (``#parent``, ``src_id``, ``tgt_id``, only ever compared for equality),
  expression indexes on the key's number, on its string (``COLLATE "C"``) and on its
  ascending common order, and a partial index on the rows holding an object or an
  array there: a comparison on the key (``n>2``, ``name<b``) is a B-tree range and an
  ascending sort on it walks an index (see
  :func:`~damas_core.query.postgres.index_statements`). PostgreSQL maintains them on
  every write, whichever process writes.
- ``changes(seq bigint PRIMARY KEY, id text UNIQUE, deleted, time)``: the change feed,
  one row per id at its latest seq; ``feed_state`` holds the counter (``seq``) and
  the horizon.

Sequence numbers follow commit order. A write transaction records its changes at the
very end, just before ``COMMIT``: it adds their number to the ``seq`` counter row
(``UPDATE … RETURNING``), which locks that row until the commit, so the next writer
takes its numbers only once this one committed. No reader can see a number whose
transaction commits later (a ``SEQUENCE`` would allow that: numbers are taken in
one order and committed in another), and writers wait on each other only for that
last step. The counter is in a table, so positions survive restarts.

Wake-ups: the same transaction sends ``NOTIFY`` (channel ``damas_feed_<schema>``,
delivered at commit); each store object keeps one more connection ``LISTEN``ing on
it, and on a notification from another process calls the :meth:`on_commit`
callbacks, as a commit of its own would (the change feed's waiters wake at once). When
that connection drops it reconnects every second, and the feed's 50 ms poll carries
on meanwhile.

Queries are compiled by :mod:`damas_core.query.postgres`. Regexes run on RE2 in
Python over the rows the rest of the query selects; so do searches while lossy rows
exist, and sorts over objects or arrays (their order is element by element, which
SQL does not give).

Concurrency: each thread using a store object has a connection of its own (opened at
its first call), so threads of one process query in parallel as processes do; a
transaction is the calling thread's. ``READ COMMITTED``; a patch reads its elements
``FOR UPDATE``, so a guarded patch (lock, unlock) sees the last committed value. A lost connection (a server restart)
makes the call fail with :class:`~damas_core.errors.StorageError`; the next call
connects again.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from damas_core.backends.base import (
    DEFAULT_INDEXES,
    Change,
    Element,
    Patch,
    Storage,
    apply_patch,
    now_ms,
    select,
)

from damas_core.elements import encode_all, id_of
from damas_core.errors import BadRequest
from damas_core.query.ast import Node, Sort
from damas_core.query.postgres import (
    composite,
    index_statements,
    key_column,
    sort_terms,
    sort_value,
    to_where,
)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_OWN_OPTIONS = ("schema", "indexes", "connect_timeout")
_CHUNK = 5000
_SCAN_BATCH = 1000

_SCHEMA = [
    'CREATE TABLE IF NOT EXISTS elements (id text COLLATE "C" PRIMARY KEY, raw text NOT NULL,'
    " doc jsonb NOT NULL, lossy boolean NOT NULL DEFAULT false)",
    "CREATE INDEX IF NOT EXISTS elements_doc ON elements USING gin (doc jsonb_path_ops)",
    "CREATE INDEX IF NOT EXISTS elements_lossy ON elements (id) WHERE lossy",
    'CREATE TABLE IF NOT EXISTS changes (seq bigint PRIMARY KEY, id text COLLATE "C" NOT NULL'
    " UNIQUE, deleted boolean NOT NULL, time bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS feed_state (key text PRIMARY KEY, value bigint NOT NULL)",
    "INSERT INTO feed_state (key, value) VALUES ('seq', 0), ('horizon', 0)"
    " ON CONFLICT (key) DO NOTHING",
]
_INSERT = (
    "INSERT INTO elements (id, raw, doc, lossy)"
    " SELECT i, r, coalesce(d, r)::jsonb, d IS NOT NULL"
    " FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(i, r, d)"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)
_UPDATE = (
    "UPDATE elements SET raw = t.r, doc = coalesce(t.d, t.r)::jsonb, lossy = t.d IS NOT NULL"
    " FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(i, r, d) WHERE elements.id = t.i"
)
_RECORD = (
    "INSERT INTO changes (seq, id, deleted, time)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::boolean[], %s::bigint[])"
    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, deleted = excluded.deleted,"
    " time = excluded.time"
)
_TAKE_SEQS = "UPDATE feed_state SET value = value + %s WHERE key = 'seq' RETURNING value"
_LAST_SEQ = "SELECT value FROM feed_state WHERE key = 'seq'"
_CHANGES = (
    "SELECT f.value, c.seq, c.id, c.deleted FROM feed_state f LEFT JOIN LATERAL"
    " (SELECT seq, id, deleted FROM changes WHERE seq > %s ORDER BY seq LIMIT %s) c ON true"
    " WHERE f.key = 'seq' ORDER BY c.seq"
)
_HAS_LOSSY = "SELECT EXISTS (SELECT 1 FROM elements WHERE lossy)"


def connection_info(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URI of a store URL, and the store's own options from its query string.

    >>> connection_info("postgres://u:p@db:5433/damas?schema=s1&sslmode=require")
    ('postgresql://u:p@db:5433/damas?sslmode=require', {'schema': 's1'})
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise BadRequest(
            "a PostgreSQL store URL looks like 'postgresql://user:password@host:port/dbname',"
            f" not {url!r}"
        )
    query = parse_qsl(parts.query)
    own = {k: v for k, v in query if k in _OWN_OPTIONS}
    rest = urlencode([(k, v) for k, v in query if k not in _OWN_OPTIONS])
    return urlunsplit(("postgresql", parts.netloc, parts.path, rest, "")), own


def json_rows(elements: Sequence[Element], op: str) -> tuple[list[str], list[str], list[Any]]:
    """``(ids, raw JSON, doc JSON or None)`` of ``elements``: ``doc`` is set only where
    the JSON holds ``\\u0000``, with U+FFFD in its place (what ``jsonb`` can hold).

    >>> json_rows([{"_id": "/a", "n": "x\\x00"}, {"_id": "/b"}], "create")[2]
    ['{"_id":"/a","n":"x\\\\ufffd"}', None]
    """
    raws = [raw.decode() for raw in encode_all(elements, op)]
    docs = [r.replace("\\u0000", "\\ufffd") if "\\u0000" in r else None for r in raws]
    return list(map(id_of, elements)), raws, docs


def statement(
    query: Node, sort: Sort, columns: str, indexed: tuple[str, ...] = ()
) -> tuple[str, str, tuple, bool, str]:
    """``SELECT columns … WHERE …`` for ``query``, its ``ORDER BY``, its parameters,
    whether SQL alone gives the answer (else the Python predicate and sort must go
    over the rows), and the check for objects or arrays among the values sorted on
    (true when the rows must be sorted in Python). Kept per query (the AST is
    immutable): compiling costs about a third of a page read under an ``_id`` prefix."""
    # The repr is part of the key: Eq(k, 1) == Eq(k, True) in Python, not in JSON.
    return _statement(repr(query), query, sort, columns, indexed)


@lru_cache(maxsize=512)
def _statement(
    _key: str, query: Node, sort: Sort, columns: str, indexed: tuple[str, ...]
) -> tuple[str, str, tuple, bool, str]:
    where = to_where(query, indexed)
    params: list[Any] = []
    values, order, seen, checks = [], [], [], []
    exact = not where.recheck
    for n, (key, direction) in enumerate(sort):
        path = tuple(key.split("."))
        if any("\x00" in k for k in path):
            exact = False
            continue
        if len(path) == 1 and key in indexed:
            # Written as the declared key's index holds it: an ascending sort walks
            # that index. Whether an object or an array is there anywhere comes from
            # its partial index (over every row, not just the matches: a superset).
            values.append(f"{key_column(key)} AS s{n}")
            checks.append(f"EXISTS (SELECT 1 FROM elements WHERE {composite(key)})")
        else:
            expr, p = sort_value(path)
            values.append(f"{expr} AS s{n}")
            params += p
            seen.append(f"jsonb_typeof(s{n}) IN ('object', 'array')")
        order += sort_terms(f"s{n}", direction)
    if seen:
        # A window, so over every match, before the LIMIT.
        checks.append(f"bool_or({' OR '.join(seen)}) OVER ()")
    check = " OR ".join(checks) or "false"
    params += where.params
    where = where.sql
    if not values:
        sql = f"SELECT {columns} FROM elements WHERE {where}"
        return sql, " ORDER BY id", tuple(params), exact, check
    inner = ", ".join(dict.fromkeys(["id", columns, *values]))
    sql = f"SELECT {columns} FROM (SELECT {inner} FROM elements WHERE {where}) AS q"
    return sql, " ORDER BY " + ", ".join([*order, "id"]), tuple(params), exact, check


class PostgreSQLStorage(Storage):
    """One schema of a PostgreSQL database; see the module docstring."""

    scheme = "postgresql"

    def __init__(self, url: str, **options: Any) -> None:
        self.conninfo, own = connection_info(url)
        options = {**own, **options}
        super().__init__(url, **options)
        self.schema = str(options.get("schema") or "public")
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise BadRequest(
                f"postgresql option schema must be a lower-case SQL name, not {self.schema!r}"
            )
        try:
            self.connect_timeout = int(options.get("connect_timeout", 10))
        except (TypeError, ValueError):
            raise BadRequest(
                "postgresql option connect_timeout must be a whole number of seconds,"
                f" not {options['connect_timeout']!r}"
            ) from None
        self.channel = f"damas_feed_{self.schema}"
        self._local = threading.local()  # per thread: its connection, its transaction
        self._conns: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        self._closed = False
        try:
            here = self._here()
            here.conn = self._connect()
            self._conns.add(here.conn)
        except psycopg.Error as e:
            raise self.storage_error("open", e) from e

    def on_commit(self, callback: Callable[[], None]) -> None:
        """As :meth:`Storage.on_commit`, and also after another process's commit to this
        store, heard through ``LISTEN`` (see the module docstring)."""
        super().on_commit(callback)
        _listener(self.conninfo, self.connect_timeout).add(self)

    # -- connections ---------------------------------------------------------------------

    def _open(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self.connect_timeout)
        conn.execute(f'SET search_path TO "{self.schema}"')
        # Declared keys are written into statements as '…' literals (index_statements).
        conn.execute("SET standard_conforming_strings TO on")
        _OWN_PIDS.add(conn.info.backend_pid)
        return conn

    def _connect(self) -> psycopg.Connection:
        conn = self._open()
        try:
            with conn.transaction():
                # One creator at a time, whichever process opens the store first.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.channel,))
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                for sql in _SCHEMA:
                    conn.execute(sql)
                for key in self._indexed:
                    for sql in index_statements(key):
                        conn.execute(sql)
        except BaseException:
            conn.close()
            raise
        return conn

    def _here(self) -> threading.local:
        """This thread's state: ``conn``, ``depth`` (of transactions), ``pending``
        (changes to number at commit)."""
        here = self._local
        if not hasattr(here, "depth"):
            here.conn, here.depth, here.pending = None, 0, []
        return here

    def _connection(self) -> psycopg.Connection:
        """This thread's connection, opened again if the last one was lost."""
        here = self._here()
        conn = here.conn
        if self._closed:
            raise psycopg.InterfaceError("the store is closed")
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            here.conn = None
            here.conn = conn = self._open()
            self._conns.add(conn)
        return conn

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        here = self._here()
        if here.depth:
            here.depth += 1
            try:
                yield
            finally:
                here.depth -= 1
            return
        conn = self._connection()
        conn.execute("BEGIN")
        here.depth = 1
        here.pending = []
        try:
            yield
            self._record(conn)
        except BaseException:
            here.depth = 0
            here.pending = []
            if not conn.broken:
                conn.execute("ROLLBACK")
            raise
        here.depth = 0
        try:
            conn.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.info.transaction_status != 0:
                conn.execute("ROLLBACK")
            raise

    def _record(self, conn: psycopg.Connection) -> None:
        """Number this transaction's changes, write them to the feed and notify: the
        last step before ``COMMIT`` (see the module docstring)."""
        here = self._here()
        pending, here.pending = here.pending, []
        if not pending:
            return
        (top,) = conn.execute(_TAKE_SEQS, (len(pending),)).fetchone()
        first = top - len(pending) + 1
        latest: dict[str, tuple[int, bool]] = {}
        for n, (id_, deleted) in enumerate(pending):
            latest.pop(id_, None)
            latest[id_] = (first + n, deleted)
        when = now_ms()
        seqs, ids, gone, times = [], [], [], []
        for id_, (seq, deleted) in latest.items():
            seqs.append(seq)
            ids.append(id_)
            gone.append(deleted)
            times.append(when if deleted else 0)
        for i in range(0, len(ids), _CHUNK * 4):
            part = slice(i, i + _CHUNK * 4)
            conn.execute(_RECORD, (seqs[part], ids[part], gone[part], times[part]))
        conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(top)))

    # -- primitives ----------------------------------------------------------------------

    def _raws(self, conn: psycopg.Connection, ids: Sequence[str], lock: str = "") -> dict:
        unique = list(dict.fromkeys(ids))
        found: dict[str, str] = {}
        for i in range(0, len(unique), _CHUNK * 4):
            found.update(
                conn.execute(
                    f"SELECT id, raw FROM elements WHERE id = ANY(%s) ORDER BY id {lock}",
                    (unique[i : i + _CHUNK * 4],),
                ).fetchall()
            )
        return found

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        found = self._raws(self._connection(), ids)
        return [None if (raw := found.get(i)) is None else orjson.loads(raw) for i in ids]

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        ids, raws, docs = json_rows(elements, op)  # raises before anything is written
        first: dict[str, int] = {}
        for n, id_ in enumerate(ids):
            first.setdefault(id_, n)
        out = [False] * len(ids)
        with self._transaction():
            conn = self._connection()
            keep = sorted(first.values()) if len(first) < len(ids) else range(len(ids))
            # Rows go in in id order, so two calls inserting the same ids wait for each
            # other rather than deadlock (the feed keeps the call's order).
            order = sorted(keep, key=ids.__getitem__)
            stored: set[str] = set()
            for i in range(0, len(order), _CHUNK):
                part = order[i : i + _CHUNK]
                rows = conn.execute(
                    _INSERT,
                    ([ids[k] for k in part], [raws[k] for k in part], [docs[k] for k in part]),
                ).fetchall()
                stored.update(r[0] for r in rows)
            for id_, n in first.items():
                out[n] = id_ in stored
            self._here().pending.extend((ids[n], False) for n in keep if out[n])
        return out

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        with self._transaction():
            conn = self._connection()
            raws = self._raws(conn, [p.id for p in patches], "FOR UPDATE")
            current: dict[str, Element] = {}
            applied: list[str] = []  # each applied patch takes a seq, in order
            out: list[bool] = []
            for p in patches:
                element = current.get(p.id)
                if element is None:
                    raw = raws.get(p.id)
                    if raw is None:
                        out.append(False)
                        continue
                    element = current[p.id] = orjson.loads(raw)
                ok = apply_patch(element, p)
                if ok:
                    applied.append(p.id)
                out.append(ok)
            changed = [current[i] for i in dict.fromkeys(applied)]
            self._here().pending.extend((i, False) for i in applied)
            if changed:
                ids, new_raws, docs = json_rows(changed, "patch")
                conn.execute(_UPDATE, (ids, new_raws, docs))
            return out

    def _delete_many(self, ids: list[str]) -> list[bool]:
        with self._transaction():
            conn = self._connection()
            gone: set[str] = set()
            unique = list(dict.fromkeys(ids))
            for i in range(0, len(unique), _CHUNK * 4):
                rows = conn.execute(
                    "DELETE FROM elements WHERE id = ANY(%s) RETURNING id",
                    (unique[i : i + _CHUNK * 4],),
                ).fetchall()
                gone.update(r[0] for r in rows)
            out = []
            for i in ids:
                out.append(i in gone)
                if i in gone:
                    gone.discard(i)
                    self._here().pending.append((i, True))
            return out

    def _scan(self) -> Iterator[Element]:
        last = ""
        while True:
            batch = (
                self._connection()
                .execute(
                    "SELECT id, raw FROM elements WHERE id > %s ORDER BY id LIMIT %s",
                    (last, _SCAN_BATCH),
                )
                .fetchall()
            )
            for _, raw in batch:
                yield orjson.loads(raw)
            if len(batch) < _SCAN_BATCH:
                return
            last = batch[-1][0]

    # -- the change feed -----------------------------------------------------------------

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        rows = self._connection().execute(_CHANGES, (since, limit + 1)).fetchall()
        position = rows[0][0]
        found = [(s, i, d) for _, s, i, d in rows if s is not None]
        if len(found) > limit:
            del found[limit:]
            return found[-1][0], found
        return position, found

    def _last_seq(self) -> int:
        return self._connection().execute(_LAST_SEQ).fetchone()[0]

    def _horizon(self) -> int:
        return (
            self._connection()
            .execute("SELECT value FROM feed_state WHERE key = 'horizon'")
            .fetchone()[0]
        )

    def _drop_tombstones(self, older_than_ms: int) -> int:
        with self._transaction():
            conn = self._connection()
            count, top = conn.execute(
                "WITH gone AS (DELETE FROM changes WHERE deleted AND time < %s RETURNING seq)"
                " SELECT count(*), max(seq) FROM gone",
                (older_than_ms,),
            ).fetchone()
            if count:
                conn.execute(
                    "UPDATE feed_state SET value = greatest(value, %s) WHERE key = 'horizon'",
                    (top,),
                )
            return count

    # -- queries -------------------------------------------------------------------------

    def _statement(self, query: Node, sort: Sort, columns: str) -> tuple[str, str, list, bool, str]:
        """:func:`statement` with this store's declared keys."""
        sql, order, params, exact, check = statement(query, tuple(sort), columns, self._indexed)
        return sql, order, list(params), exact, check

    @property
    def _indexed(self) -> tuple[str, ...]:
        """The declared keys that have expression indexes (a key holding NUL, which an
        SQL string cannot, is searched as an undeclared one)."""
        return tuple(
            k for k in self.indexes if k not in (*DEFAULT_INDEXES, "_id") and "\x00" not in k
        )

    def _ensure_index(self, key: str) -> None:
        if key not in self._indexed:
            return
        with self._transaction():
            conn = self._connection()
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.channel,))
            for sql in index_statements(key):
                conn.execute(sql)

    def _select(
        self, query: Node, sort: Sort, skip: int, limit: int | None, columns: str
    ) -> list[Any]:
        """Rows of ``(columns, …)`` when SQL gives the answer, else the elements
        themselves, checked and sorted in Python."""
        conn = self._connection()
        sql, order, params, exact, check = self._statement(query, sort, columns)
        if exact:
            # One statement answers, and says whether its answer holds: whether
            # any row is lossy, whether objects or arrays are among the values
            # sorted on.
            checks = f", {_HAS_LOSSY.removeprefix('SELECT ')}"
            if sort:
                checks += f", {check}"
            sql = sql.replace(f"SELECT {columns} ", f"SELECT {columns}{checks} ", 1)
            if limit or skip:
                # Written out, not bound: a prepared statement's generic plan for an
                # unknown LIMIT sorts the whole range where a known one walks the
                # primary key (a page of 100 under an _id prefix: 150-180 µs instead
                # of 90). int() keeps them numbers.
                order += f" LIMIT {int(limit) if limit else 'ALL'} OFFSET {int(skip)}"
            rows = conn.execute(sql + order, params).fetchall()
            if rows:
                exact = not rows[0][1] and not (sort and rows[0][2])
            else:
                exact = not conn.execute(_HAS_LOSSY).fetchone()[0]
            if exact:
                return rows
        sql, _, params, _, _ = self._statement(query, (), "raw")
        rows = conn.execute(sql.replace(" WHERE ", " WHERE (", 1) + ") OR lossy", params).fetchall()
        return select([orjson.loads(r[0]) for r in rows], query, sort, skip, limit)

    def _find(self, query: Node, sort: Sort, skip: int, limit: int | None) -> list[str]:
        rows = self._select(query, sort, skip, limit, "id")
        if rows and isinstance(rows[0], dict):
            return [e["_id"] for e in rows]  # type: ignore[index]
        return [r[0] for r in rows]  # type: ignore[index]

    def _find_elements(
        self, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        rows = self._select(query, sort, skip, limit, "raw")
        if rows and isinstance(rows[0], dict):
            return rows  # type: ignore[return-value]
        return [orjson.loads(r[0]) for r in rows]  # type: ignore[index]

    def query_plan(self, query: Node, sort: Sort = (), limit: int | None = None) -> list[str]:
        """PostgreSQL's ``EXPLAIN`` lines for the statement ``find`` sends for ``query``
        (when SQL alone answers it): which indexes it uses."""
        sql, order, params, _, _ = self._statement(query, tuple(sort), "id")
        if limit:
            order += f" LIMIT {int(limit)}"  # as find writes it
        rows = self._connection().execute("EXPLAIN " + sql + order, params).fetchall()
        return [r[0] for r in rows]

    def _count(self, query: Node) -> int:
        where = to_where(query, self._indexed)
        conn = self._connection()
        if not where.recheck and not conn.execute(_HAS_LOSSY).fetchone()[0]:
            return conn.execute(
                f"SELECT count(*) FROM elements WHERE {where.sql}", where.params
            ).fetchone()[0]
        return len(self._find(query, (), 0, None))

    def _close(self) -> None:
        self._closed = True
        _listener(self.conninfo, self.connect_timeout).remove(self)
        for conn in list(self._conns):
            conn.close()


#: Server process ids of this process's connections: their notifications are its own
#: commits, whose callbacks already ran.
_OWN_PIDS: set[int] = set()
_LISTENERS: dict[str, _Listener] = {}
_LISTENERS_LOCK = threading.Lock()


def _listener(conninfo: str, connect_timeout: int) -> _Listener:
    with _LISTENERS_LOCK:
        found = _LISTENERS.get(conninfo)
        if found is None:
            found = _LISTENERS[conninfo] = _Listener(conninfo, connect_timeout)
        return found


class _Listener:
    """One connection per process and database ``LISTEN``ing on the channels of the
    stores opened on it; a notification from another process calls their commit
    callbacks, and so does each new ``LISTEN`` (what was written before it was heard by
    nobody). When the connection drops it connects again every second."""

    def __init__(self, conninfo: str, connect_timeout: int) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.stores: dict[str, weakref.WeakSet[PostgreSQLStorage]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, store: PostgreSQLStorage) -> None:
        with self.lock:
            self.stores.setdefault(store.channel, weakref.WeakSet()).add(store)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="damas-postgresql-listen", daemon=True
                )
                self.thread.start()

    def remove(self, store: PostgreSQLStorage) -> None:
        with self.lock:
            stores = self.stores.get(store.channel)
            if stores is not None:
                stores.discard(store)

    def _run(self) -> None:
        while True:
            try:
                with psycopg.connect(
                    self.conninfo, autocommit=True, connect_timeout=self.connect_timeout
                ) as conn:
                    _OWN_PIDS.add(conn.info.backend_pid)
                    listening: set[str] = set()
                    while True:
                        with self.lock:
                            wanted = {c for c, s in self.stores.items() if len(s)}
                        fresh = wanted - listening
                        for channel in fresh:
                            conn.execute(f'LISTEN "{channel}"')
                        for channel in listening - wanted:
                            conn.execute(f'UNLISTEN "{channel}"')
                        listening = wanted
                        # what another process wrote before this LISTEN (a store just
                        # opened, the connection back after a drop) was heard by nobody:
                        # the stores' waiters look at the position once
                        for channel in fresh:
                            self._wake(channel)
                        for n in conn.notifies(timeout=0.5):
                            if n.pid not in _OWN_PIDS:
                                self._wake(n.channel)
            except Exception:
                time.sleep(1.0)

    def _wake(self, channel: str) -> None:
        """Call the commit callbacks of the stores on ``channel``."""
        with self.lock:
            stores = list(self.stores.get(channel, ()))
        for store in stores:
            for callback in store._commit_callbacks:
                callback()


__all__ = ["PostgreSQLStorage", "connection_info", "json_rows"]
