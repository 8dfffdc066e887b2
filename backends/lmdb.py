"""``lmdb://``: the embedded default backend, one LMDB environment shared by processes.

An LMDB environment is a directory holding one memory-mapped B-tree file
(``data.mdb``) and a lock file. Several processes (and threads) may open the same
store: readers never block, and LMDB lets one writer at a time commit, which is what
makes multi-element steps (a publish, a lock of several ids, a bulk create) atomic
across processes. A crash, even ``kill -9`` in the middle of a commit, leaves the
last committed state.

Layout inside the environment:

- ``elements``: ``_id`` (UTF-8) → the element as JSON bytes (orjson);
- ``index:<key>``: one duplicate-sorted sub-database per indexed key, value key →
  the ``_id`` keys of the elements holding it (array members indexed one by one);
- ``feed:seq`` and ``feed:id``: the change feed (:mod:`damas_core.backends.lmdb_feed`);
- ``meta``: the list of indexed keys, so a reopened store, or another process,
  maintains and uses every index that exists; the feed's horizon.

The backend is split by what each part holds: key encodings and options
(:mod:`~damas_core.backends.lmdb_keys`), the environments open in the process and the
fork guard (:mod:`~damas_core.backends.lmdb_env`), transactions, map growth and
replay (:mod:`~damas_core.backends.lmdb_engine`), index upkeep
(:mod:`~damas_core.backends.lmdb_indexes`), the feed
(:mod:`~damas_core.backends.lmdb_feed`); this module holds the storage and its steps.

URLs: ``lmdb:///absolute/dir`` or ``lmdb://relative/dir`` (relative to the current
directory); the directory is created. Options, as keywords or in the query string
(``lmdb:///srv/damas?sync=false``): ``map_size`` (initial map, bytes, default
64 MiB; the map grows by itself), ``indexes`` (more keys to index), ``sync``
(default ``True``: a commit is on disk when it returns), ``max_dbs`` (default 128).

>>> import tempfile
>>> from damas_core.backends.lmdb import LMDBStorage
>>> store = LMDBStorage(f"lmdb://{tempfile.mkdtemp()}", indexes=["type"])
>>> store.insert_many([{"_id": "/a", "type": "shot"}, {"_id": "/b", "type": ["shot", "asset"]}])
[True, True]
>>> from damas_core.query.ast import Eq
>>> store.find(Eq(("type",), "asset"))
['/b']
>>> store.changes(0, 10)
(2, [(1, '/a', False), (2, '/b', False)])
>>> store.close()
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import lmdb
import orjson
from damas_core.backends import lmdb_feed, lmdb_indexes
from damas_core.backends.base import (
    ID_ORDER,
    All,
    Change,
    Element,
    Patch,
    Storage,
    apply_patch,
    id_lower_bound,
    id_prefix,
    index_lookup,
    select,
)
from damas_core.backends.lmdb_engine import BLOCK_ROOM, Engine
from damas_core.backends.lmdb_env import CLOSED, FIXED_DBS, META_INDEXES, acquire, release
from damas_core.backends.lmdb_keys import (
    LONG_PREFIX,
    MAX_KEY,
    bool_option,
    check_index_name,
    element_key,
    element_keys,
    index_db_name,
    index_key,
    int_option,
    sorted_after,
    store_path,
    utf8,
)

from damas_core.elements import RUN, encode, encode_run, id_of
from damas_core.errors import BadRequest
from damas_core.query.ast import Eq, In, Node, Sort

DEFAULT_MAP_SIZE = 64 << 20
DEFAULT_MAX_DBS = 128

_loads = orjson.loads
_dumps = orjson.dumps
_crc = zlib.crc32


class _NotAllNew(Exception):
    """A bulk insert met a key already stored: undo the transaction, go one by one."""


class LMDBStorage(Storage):
    """Elements in an LMDB environment, with secondary indexes and the change feed
    kept in the same commits. Transactions, map growth and replay:
    :mod:`damas_core.backends.lmdb_engine`."""

    scheme = "lmdb"

    def __init__(self, url: str, **options: Any) -> None:
        path, query = store_path(url)
        merged: dict[str, Any] = {**query, **options}
        super().__init__(url, **merged)
        map_size = int_option(merged, "map_size", DEFAULT_MAP_SIZE)
        max_dbs = int_option(merged, "max_dbs", DEFAULT_MAX_DBS)
        sync = bool_option(merged, "sync", True)
        for key in self.indexes:
            check_index_name(key)
        if len(self.indexes) + FIXED_DBS > max_dbs:
            raise BadRequest(f"too many indexes for max_dbs={max_dbs}: raise max_dbs")
        self._engine = Engine(CLOSED, self._know_indexes)
        try:
            h = self._engine.h = acquire(path, map_size, max_dbs, sync)
            raw = self._engine.read(lambda txn: _meta(txn, h.meta))
            h.gate.enter()
            try:
                self._know_indexes(h.refresh_indexes(raw))
            finally:
                h.gate.exit()
            missing = [k for k in self.indexes if k not in h.index_dbs]
            if missing:
                self._build_indexes(missing)
            if self._engine.read(lambda txn: _unnumbered(txn, h)):
                self._engine.write(lambda txn: lmdb_feed.number_all(txn, h), need=1 << 20)
        except (lmdb.Error, OSError) as e:
            self.close()
            raise self.storage_error("open", e) from e
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> str:
        """The environment's directory (absolute)."""
        return str(self._h.path)

    @property
    def _h(self) -> Any:
        return self._engine.h

    def _know_indexes(self, names: list[str]) -> None:
        self.indexes = tuple(dict.fromkeys([*self.indexes, *names]))

    # -- primitives ---------------------------------------------------------------------

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        keys = [element_key(ids[0])] if len(ids) == 1 else element_keys(ids)
        h = self._h
        if h.local.block is None:
            # The common case, inlined: reading by id is what a tracker does most.
            gate = h.gate
            gate.enter()
            try:
                txn = h.env.begin()
                try:
                    raws = _get_raw(txn, h.main, keys)
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                raws = None
            finally:
                gate.exit()
            if raws is None:
                raws = self._engine.read(lambda txn: _crc_raws(_get_raw(txn, h.main, keys)))
        else:
            raws = self._engine.read(lambda txn: _crc_raws(_get_raw(txn, h.main, keys)))
        if None in raws:
            return [None if r is None else _loads(r) for r in raws]
        return list(map(_loads, raws))

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        sample = elements[:64]
        size = sum(len(encode(e, op)) for e in sample) * len(elements) // max(len(sample), 1)
        elements = list(elements)
        need = 2 * size + 160 * len(elements)
        engine = self._engine
        if engine.block() is not None:
            return engine.write(lambda txn: self._insert_nested(txn, elements, op), need=need)
        try:
            return engine.write(lambda txn: self._insert_bulk(txn, elements, op), need=need)
        except _NotAllNew:  # that write was undone whole: one by one this time
            return engine.write(lambda txn: self._insert(txn, elements, op), need=need)

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        need = 0
        for p in patches:
            need += 2 * len(_dumps(dict(p.set))) + 1024  # fails here if a value is not JSON
        patches = list(patches)
        return self._engine.write(lambda txn: self._patch(txn, patches), need=need)

    def _delete_many(self, ids: list[str]) -> list[bool]:
        keys = [element_key(i) for i in ids]
        return self._engine.write(lambda txn: self._delete(txn, keys), need=64 * len(ids))

    def _scan(self) -> Iterator[Element]:
        main = self._h.main
        if self._engine.block() is not None:
            raws, _ = self._engine.read(lambda txn: _scan_chunk(txn, main, None, None))
            yield from map(_loads, raws)
            return
        # Outside a transaction, read in chunks so no read transaction stays open while
        # the caller works (it would hold back page reuse and map resizes).
        after: bytes | None = None
        while True:
            raws, after = self._engine.read(
                lambda txn, after=after: _scan_chunk(txn, main, after, 1000)
            )
            yield from map(_loads, raws)
            if len(raws) < 1000:
                return

    def _find(self, query: Node, sort: Sort, skip: int, limit: int | None) -> list[str]:
        def step(txn: Any) -> tuple[list[str], int]:
            found = self._find_ids(txn, query, sort, skip, limit)
            return found, _crc("\x00".join(found).encode("utf-8", "surrogatepass"))

        return self._engine.read(step, buffers=True)

    def _find_elements(
        self, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        return self._engine.read(
            lambda txn: _crc_elements(self._find_all(txn, query, sort, skip, limit)),
            buffers=True,
        )

    def _count(self, query: Node) -> int:
        def step(txn: Any) -> tuple[int, int]:
            n = self._count_in(txn, query)
            return n, n

        return self._engine.read(step, buffers=True)

    def _candidates(self, query: Node) -> list[Element]:
        return self._engine.read(
            lambda txn: _crc_elements(list(self._elements(txn, query))), buffers=True
        )

    def _ensure_index(self, key: str) -> None:
        try:
            check_index_name(key)
            if self._engine.block() is not None:
                raise BadRequest("ensure_index cannot run inside a transaction")
        except BadRequest:
            self.indexes = tuple(k for k in self.indexes if k != key)
            raise
        if key not in self._h.index_dbs:
            self._build_indexes([key])

    def _transaction(self) -> Any:
        return self._engine.transaction()

    def _close(self) -> None:
        h, self._engine.h = self._engine.h, CLOSED
        if h is not CLOSED:
            release(h)

    # -- the change feed ------------------------------------------------------------------

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        h = self._h
        return self._engine.read(lambda txn: lmdb_feed.changes(txn, h, since, limit))

    def _last_seq(self) -> int:
        h = self._h
        return self._engine.read(lambda txn: lmdb_feed.last_seq(txn, h))

    def _horizon(self) -> int:
        h = self._h
        return self._engine.read(lambda txn: lmdb_feed.horizon(txn, h))

    def _drop_tombstones(self, older_than_ms: int) -> int:
        h = self._h
        return self._engine.write(
            lambda txn: lmdb_feed.drop_tombstones(txn, h, older_than_ms), need=1 << 16
        )

    # -- write steps --------------------------------------------------------------------

    def _insert_bulk(self, txn: Any, elements: list[Element], op: str) -> tuple[list[bool], int]:
        """Step: the usual insert, every key new and short, in bulk (see
        :meth:`_put_new`); :class:`_NotAllNew` when it is not that case, for the
        caller to undo the transaction and run :meth:`_insert`."""
        done, crc = self._put_new(txn, elements, op)
        if not done:
            raise _NotAllNew
        return [True] * len(elements), _crc(b"\x01" * len(elements), crc)

    def _insert_nested(self, txn: Any, elements: list[Element], op: str) -> tuple[list[bool], int]:
        """Step: the insert inside a ``transaction()`` block, which cannot be undone
        whole: the bulk try runs in a nested transaction, undone on its own."""
        child = self._h.env.begin(write=True, parent=txn)
        try:
            done, crc = self._put_new(child, elements, op)
        except BaseException:
            child.abort()
            raise
        if done:
            child.commit()
            return [True] * len(elements), _crc(b"\x01" * len(elements), crc)
        child.abort()
        return self._insert(txn, elements, op)

    def _insert(self, txn: Any, elements: list[Element], op: str) -> tuple[list[bool], int]:
        """Step: write new elements one by one; an element that is not one raises, and
        nothing is written."""
        h = self._h
        put, main = txn.put, h.main
        feed = lmdb_feed.FeedWriter(txn, h)
        out: list[bool] = []
        crc = 0
        for element in elements:
            key = element_key(element["_id"])
            raw = encode(element, op)
            fresh = put(key, raw, db=main, overwrite=False)
            out.append(fresh)
            crc = _crc(raw, crc)
            if fresh:
                feed.record(key, element["_id"], False)
                for name, db in h.index_dbs.items():
                    for ik in lmdb_indexes.entries(element, name):
                        put(ik, key, db=db)
        return out, _crc(bytes(out), crc)

    def _put_new(self, txn: Any, elements: list[Element], op: str) -> tuple[bool, int]:
        """Put every element, its index entries and its feed entry in bulk, a run of a
        few hundred at a time (holding them all costs more than the writes), and the
        CRC of the JSON written. False, with some written, when a key is already
        stored (or too long, or not UTF-8): the caller undoes the transaction.

        When the ids come sorted and after every stored one (fresh ULIDs, a restore of
        an export, which is in ``_id`` order), they are appended: LMDB then skips the
        search for each key's place."""
        h = self._h
        ids = list(map(id_of, elements))
        main = txn.cursor(db=h.main)
        append = sorted_after(ids, main)
        feed = lmdb_feed.FeedWriter(txn, h)
        indexes = [(name, txn.cursor(db=db)) for name, db in h.index_dbs.items()]
        crc = 0
        for start in range(0, len(elements), RUN):
            run = elements[start : start + RUN]
            keys = utf8(ids[start : start + RUN])
            if keys is None:
                return False, 0
            values = encode_run(run, op)
            crc = _crc(b"".join(values), crc)  # a replay must write the same bytes
            try:
                _, added = main.putmulti(zip(keys, values), overwrite=False, append=append)
            except lmdb.BadValsizeError:  # a key too long for LMDB
                return False, 0
            if added != len(run):
                return False, 0
            feed.record_new(keys, append)
            for name, cursor in indexes:
                lmdb_indexes.put_run(cursor, run, keys, name, append)
        return True, crc

    def _patch(self, txn: Any, patches: list[Patch]) -> tuple[list[bool], int]:
        """Step: apply each patch whose element exists and whose guard holds."""
        get, put, delete, main = txn.get, txn.put, txn.delete, self._h.main
        dbs = self._h.index_dbs
        feed = lmdb_feed.FeedWriter(txn, self._h)
        out: list[bool] = []
        crc = 0
        for p in patches:
            key = element_key(p.id)
            raw = get(key, db=main)
            if raw is None:
                out.append(False)
                continue
            element = _loads(raw)
            touched = [n for n in dbs if n in p.set or n in p.unset]
            before = [lmdb_indexes.entries(element, n) for n in touched]
            if not apply_patch(element, p):
                out.append(False)
                continue
            raw = _dumps(element)
            put(key, raw, db=main)
            feed.record(key, p.id, False)
            crc = _crc(raw, crc)
            for name, old in zip(touched, before):
                new = lmdb_indexes.entries(element, name)
                for ik in old - new:
                    delete(ik, key, db=dbs[name])
                for ik in new - old:
                    put(ik, key, db=dbs[name])
            out.append(True)
        return out, _crc(bytes(out), crc)

    def _delete(self, txn: Any, keys: list[bytes]) -> tuple[list[bool], int]:
        """Step: remove the elements under ``keys`` that exist, leaving tombstones."""
        get, delete, main = txn.get, txn.delete, self._h.main
        dbs = self._h.index_dbs.items()
        feed = lmdb_feed.FeedWriter(txn, self._h)
        out: list[bool] = []
        for key in keys:
            raw = get(key, db=main)
            if raw is None:
                out.append(False)
                continue
            element = _loads(raw)
            for name, db in dbs:
                for ik in lmdb_indexes.entries(element, name):
                    delete(ik, key, db=db)
            delete(key, db=main)
            feed.record(key, element["_id"], True)
            out.append(True)
        return out, _crc(bytes(out))

    # -- reads (inside a step's transaction) ----------------------------------------------

    def _exact(self, query: Node) -> tuple[str, tuple[Any, ...]] | None:
        """``(key, values)`` when the index answers ``query`` exactly (no predicate to
        run): a lone ``Eq``/``In`` on an indexed top-level key."""
        if isinstance(query, Eq | In):
            return index_lookup(query, tuple(self._h.index_dbs))
        return None

    def _index_hits(self, txn: Any, name: str, values: tuple[Any, ...]) -> list[bytes]:
        return lmdb_indexes.hits(txn, self._h.index_dbs[name], values)

    def _elements(self, txn: Any, query: Node) -> Iterator[Element] | list[Element]:
        """The elements ``query`` may match: through an index when it pins an indexed
        key to values, else those in the key range of the ``_id`` prefix it pins
        (:func:`~damas_core.backends.base.id_prefix`), else every element; decoded
        lazily, as the cursor goes."""
        h = self._h
        found = index_lookup(query, tuple(h.index_dbs))
        if found is None:
            return (_loads(raw) for _, raw in self._key_range(txn, query))
        return self._fetch(txn, self._index_hits(txn, *found))

    def _key_range(self, txn: Any, query: Node) -> Iterator[tuple[Any, Any]]:
        """``(key, raw element)`` in key order, of every element, or of those whose key
        starts as the ``_id`` prefix ``query`` pins: the one key range holding every
        id with that prefix (a long id's key keeps its first ``LONG_PREFIX`` bytes);
        from the key of the least id it lets match (:func:`.id_lower_bound`) on. An id
        from that bound on has a key at or after the bound's first ``LONG_PREFIX``
        bytes: UTF-8 keeps the order of the characters it encodes."""
        cursor = txn.cursor(db=self._h.main)
        prefix, bound = id_prefix(query), id_lower_bound(query)
        head = b"" if prefix is None else _key_head(prefix)
        start = max(head, b"" if bound is None else _key_head(bound))
        if not (cursor.set_range(start) if start else cursor.first()):
            return
        n = len(head)
        for key, raw in cursor:
            if key[:n] != head:
                return
            yield key, raw

    def _first_in_id_order(self, txn: Any, query: Node, skip: int, limit: int) -> list[Element]:
        """The page ``skip``, ``limit`` of the matches in ``_id`` order, reading the key
        range only until the page is full. Key order is ``_id`` order except among long
        ids (a digest ends their key), so reading goes on while keys share the last
        match's first ``LONG_PREFIX`` bytes: every key after those holds a greater id
        than every key read."""
        from damas_core.query.predicate import to_predicate

        match = to_predicate(query)
        want = skip + limit
        hits: list[Element] = []
        cut: bytes | None = None
        for key, raw in self._key_range(txn, query):
            if cut is not None and key[:LONG_PREFIX] != cut:
                break
            element = _loads(raw)
            if match(element):
                hits.append(element)
                if cut is None and len(hits) >= want:
                    cut = bytes(key[:LONG_PREFIX])
        hits.sort(key=id_of)
        return hits[skip:want]

    def _fetch(self, txn: Any, keys: list[bytes]) -> list[Element]:
        return list(map(_loads, filter(None, _get_raw(txn, self._h.main, keys))))

    def _exact_hits(
        self, txn: Any, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[bytes] | None:
        """The keys of the page asked for, straight from an index, when it answers the
        query exactly and key order is ``_id`` order (no sort, no digest-shortened key)."""
        found = None if sort else self._exact(query)
        if found is None:
            return None
        keys = self._index_hits(txn, *found)
        if any(len(k) == MAX_KEY for k in keys):
            return None
        return keys[skip : None if limit is None else skip + limit]

    def _find_all(
        self, txn: Any, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        keys = self._exact_hits(txn, query, sort, skip, limit)
        if keys is not None:
            return self._fetch(txn, keys)
        if (
            limit is not None
            and sort in ID_ORDER
            and index_lookup(query, tuple(self._h.index_dbs)) is None
        ):
            return self._first_in_id_order(txn, query, skip, limit)
        return select(self._elements(txn, query), query, sort, skip, limit)

    def _find_ids(
        self, txn: Any, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[str]:
        keys = self._exact_hits(txn, query, sort, skip, limit)
        if keys is not None:  # ids from the index alone: nothing to decode
            return [k.decode("utf-8", "surrogatepass") for k in keys]
        if isinstance(query, All) and not sort:
            # Every id, in key order: no element needs decoding (except long ids).
            main = self._h.main
            all_keys = txn.cursor(db=main).iternext(keys=True, values=False)
            end = None if limit is None else skip + limit
            out = []
            for k in islice(all_keys, skip, end):
                k = bytes(k)
                out.append(
                    _loads(txn.get(k, db=main))["_id"]
                    if b"\xff" in k
                    else k.decode("utf-8", "surrogatepass")
                )
            return out
        return [e["_id"] for e in self._find_all(txn, query, sort, skip, limit)]

    def _count_in(self, txn: Any, query: Node) -> int:
        if isinstance(query, All):
            return int(txn.stat(self._h.main)["entries"])
        found = self._exact(query)
        if found is not None:
            return len(self._index_hits(txn, *found))
        from damas_core.query.predicate import to_predicate

        return sum(map(to_predicate(query), self._elements(txn, query)))

    # -- indexes ----------------------------------------------------------------------

    def _build_indexes(self, names: list[str]) -> None:
        """Create and fill the indexes for ``names`` in one write transaction."""
        h = self._h
        if len(h.index_dbs) + len(names) + FIXED_DBS > h.max_dbs:
            raise BadRequest(
                f"too many indexes for max_dbs={h.max_dbs}: reopen with a larger max_dbs"
            )
        engine = self._engine
        full = False
        while True:
            engine.ensure_room(0, double=full)
            h.gate.enter()
            try:
                with h.lock:
                    txn = engine.begin_write()
                    try:
                        raw = txn.get(META_INDEXES, db=h.meta)
                        stored = _loads(raw) if raw is not None else []
                        new = [n for n in dict.fromkeys(names) if n not in stored]
                        dbs = {
                            n: h.env.open_db(index_db_name(n), txn=txn, dupsort=True) for n in new
                        }
                        if dbs:
                            lmdb_indexes.fill(txn, h.main, dbs)
                        meta_raw = _dumps([*stored, *new])
                        txn.put(META_INDEXES, meta_raw, db=h.meta)
                        txn.commit()
                    except BaseException:
                        txn.abort()
                        raise
                    h.index_dbs = {**h.index_dbs, **dbs}
                    h.meta_raw = meta_raw
                    self._know_indexes(list(h.index_dbs))
                    return
            except lmdb.MapFullError:
                full = True
            finally:
                h.gate.exit()


# -- read steps and their CRCs ------------------------------------------------------------


def _key_head(id: str) -> bytes:
    """The first bytes of the key of every id starting with ``id``."""
    return id.encode("utf-8", "surrogatepass")[:LONG_PREFIX]


def _get_raw(txn: Any, db: Any, keys: list[bytes]) -> list[bytes | None]:
    """The stored JSON under each key, ``None`` where absent."""
    if len(keys) == 1:
        return [txn.get(keys[0], db=db)]
    found = txn.cursor(db=db).getmulti(keys)  # in order, absent keys left out
    if len(found) == len(keys):
        return [v for _, v in found]
    get = txn.get
    return [get(k, db=db) for k in keys]


def _crc_raws(raws: list[bytes | None]) -> tuple[list[bytes | None], int]:
    # JSON never holds a raw NUL or 0x01: the join keeps every boundary and absence.
    return raws, _crc(b"\x00".join(b"\x01" if r is None else r for r in raws))


def _crc_elements(elements: list[Element]) -> tuple[list[Element], int]:
    return elements, _crc(_dumps(elements))


def _scan_chunk(
    txn: Any, main: Any, after: bytes | None, size: int | None
) -> tuple[tuple[list[bytes], bytes | None], int]:
    """Step: up to ``size`` raw elements after the key ``after``, and the last key read."""
    cursor = txn.cursor(db=main)
    ok = cursor.set_range(after) if after is not None else cursor.first()
    if ok and after is not None and cursor.key() == after:
        ok = cursor.next()
    out: list[bytes] = []
    last = after
    if ok:
        for key, raw in cursor:
            out.append(raw)
            last = key
            if size is not None and len(out) >= size:
                break
    return (out, last), _crc(b"\x00".join(out))


def _unnumbered(txn: Any, h: Any) -> tuple[bool, int]:
    """Step: whether the store holds elements but no feed (made before the feed)."""
    empty = not txn.cursor(db=h.by_seq).first() and not _feed_horizon(txn, h)
    found = empty and txn.cursor(db=h.main).first()
    return bool(found), int(bool(found))


def _feed_horizon(txn: Any, h: Any) -> int:
    return lmdb_feed.horizon(txn, h)[0]


def _meta(txn: Any, meta: Any) -> tuple[bytes | None, int]:
    raw = txn.get(META_INDEXES, db=meta)
    return raw, _crc(raw or b"")


__all__ = [
    "BLOCK_ROOM",
    "DEFAULT_MAP_SIZE",
    "LMDBStorage",
    "element_key",
    "index_key",
    "store_path",
]
