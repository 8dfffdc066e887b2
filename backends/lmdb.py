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
- ``meta``: the list of indexed keys, so a reopened store, or another process,
  maintains and uses every index that exists.

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
>>> store.close()
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import compress, islice, repeat
from operator import contains, itemgetter, lt
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import lmdb
import orjson
from damas_core.backends.base import (
    All,
    Change,
    Element,
    Patch,
    Storage,
    apply_patch,
    index_lookup,
    index_values,
    now_ms,
    select,
)

from damas_core.elements import RUN, encode, encode_run, id_of
from damas_core.errors import BadRequest, StorageError
from damas_core.query.ast import Eq, In, Node, Sort

DEFAULT_MAP_SIZE = 64 << 20
DEFAULT_MAX_DBS = 128
MAIN_DB = b"elements"
META_DB = b"meta"
INDEX_PREFIX = b"index:"
META_INDEXES = b"indexes"
FEED_SEQ_DB = b"feed:seq"
FEED_ID_DB = b"feed:id"
META_HORIZON = b"horizon"
# Sub-databases besides the indexes: elements, meta and the feed's two.
_FIXED_DBS = 4

# LMDB's compiled key size limit (also the limit of duplicate-sorted values).
MAX_KEY = 511
# A longer key keeps its first bytes (so nearby ids stay together) and gets a digest;
# 0xFF never occurs in UTF-8, so such a key cannot collide with a plain one.
_LONG_PREFIX = MAX_KEY - 1 - 32
MAX_INDEX_NAME = 400
# Bytes kept free above twice the used size before any write starts (see _room).
_SLACK = 1 << 20
#: Room a transaction block gets before it starts, in bytes.
BLOCK_ROOM = 256 << 20
# How long a map resize waits for this process's other transactions to end.
_RESIZE_WAIT_S = 60.0

_loads = orjson.loads
_dumps = orjson.dumps


# -- key encodings ----------------------------------------------------------------------


def _fit(key: bytes) -> bytes:
    if len(key) <= MAX_KEY:
        return key
    return key[:_LONG_PREFIX] + b"\xff" + hashlib.sha256(key).digest()


def _key(id: str) -> bytes:
    key = id.encode("utf-8", "surrogatepass")
    return key if len(key) <= MAX_KEY else _fit(key)


def element_key(id: str) -> bytes:
    """The ``elements`` key of an ``_id``: its UTF-8 bytes (a digest tail past 511 bytes).

    >>> element_key("/a")
    b'/a'
    """
    return _key(id)


def index_key(value: Any) -> bytes:
    """The index key of a scalar: numbers equal by value share one, while the number
    12, the string ``"12"`` and ``true`` stay distinct.

    >>> index_key(12) == index_key(12.0), index_key(12) == index_key("12")
    (True, False)
    >>> index_key(True) == index_key(1)
    False
    """
    if isinstance(value, str):
        return _fit(b"s" + value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int):
        return _fit(b"n%d" % value)
    if isinstance(value, float):
        if value.is_integer():
            return _fit(b"n%d" % int(value))
        return b"n" + repr(value).encode()
    raise TypeError(f"cannot index {type(value).__name__} values")


def store_path(url: str) -> tuple[str, dict[str, str]]:
    """The directory an ``lmdb://`` URL names, and the options in its query string.

    >>> store_path("lmdb:///srv/damas?sync=false")
    ('/srv/damas', {'sync': 'false'})
    >>> store_path("lmdb://data/store")
    ('data/store', {})
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "lmdb":
        raise BadRequest(f"not an lmdb:// URL: {url!r}")
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise BadRequest(
            f"an LMDB store URL names a directory: 'lmdb:///abs/dir' or 'lmdb://rel/dir', not {url!r}"
        )
    return os.path.expanduser(path), dict(parse_qsl(parts.query))


def _fingerprint(result: Any) -> Any:
    """What a replayed step must reproduce (see ``LMDBStorage._regrow``)."""
    return tuple(result) if isinstance(result, list) else result


def _fingerprint_elements(result: list[Element]) -> bytes:
    return _dumps(result)


def _fingerprint_write(result: tuple[list[bool], int]) -> tuple[tuple[bool, ...], int]:
    return tuple(result[0]), result[1]


# -- per-process shared state -------------------------------------------------------------


class _Gate:
    """Lets transactions run together and a map resize run alone.

    Resizing the map replaces the memory mapping, so it must wait until no
    transaction of this process is open; new ones wait while it happens. Entering is
    the hot path of every read, so it takes no lock: a transaction appends to
    ``_active`` and then looks at ``_resizing``, a resize sets ``_resizing`` and then
    waits for ``_active`` to empty (list appends and pops are atomic), so at least
    one of the two sees the other.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: list[None] = []
        self._resizing = False
        self.forked = False  # set in a child process by the fork hook below

    def enter(self) -> None:
        active = self._active
        active.append(None)
        if self._resizing or self.forked:
            active.pop()
            self._wait_turn()

    def _wait_turn(self) -> None:
        if self.forked:
            raise StorageError(
                "an LMDB store cannot be used across fork(): open it in a child process "
                "that did not inherit it (start it with the 'spawn' method)"
            )
        with self._cond:
            self._cond.notify_all()  # a resize may be waiting for the entry just undone
            while self._resizing:
                self._cond.wait()
            self._active.append(None)

    def exit(self) -> None:
        self._active.pop()
        if self._resizing:
            with self._cond:
                self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            if not self._cond.wait_for(lambda: not self._active, _RESIZE_WAIT_S):
                self._resizing = False
                self._cond.notify_all()
                raise StorageError(
                    "the LMDB map must grow but another transaction of this process stays open"
                )
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class _Local(threading.local):
    """Per-thread state: the thread's open write transaction, if any (a class default,
    so that looking it up never raises and catches AttributeError: reads do it)."""

    block: _Block | None = None


class _Env:
    """One open environment per directory and process (LMDB forbids opening twice)."""

    def __init__(self, path: str, map_size: int, max_dbs: int, sync: bool) -> None:
        self.path = path
        self.env = lmdb.open(
            path,
            map_size=map_size,
            max_dbs=max_dbs,
            subdir=True,
            lock=True,
            sync=sync,
            metasync=sync,
            readahead=False,
        )
        self.env.reader_check()  # free reader slots of processes that died
        self.psize: int = self.env.stat()["psize"]
        self.main = self.env.open_db(MAIN_DB)
        self.meta = self.env.open_db(META_DB)
        self.by_seq = self.env.open_db(FEED_SEQ_DB)
        self.by_id = self.env.open_db(FEED_ID_DB)
        # Replaced whole, never mutated, so readers in other threads can iterate it.
        self.index_dbs: dict[str, Any] = {}
        self.meta_raw: bytes | None = None
        self.gate = _Gate()
        self.local = _Local()
        self.lock = threading.RLock()
        self.refs = 0
        self.max_dbs = max_dbs


_OPEN: dict[str, _Env] = {}
_OPEN_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    """An environment inherited through fork() must not be used (LMDB forbids it, and
    py-lmdb will not open the same one again in the child): every store of the parent
    refuses to work in the child, with a clear error."""
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()  # another thread may have held it at the fork
    for h in _OPEN.values():
        h.gate.forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Block:
    """A thread's open write transaction and the steps run in it (for replay)."""

    __slots__ = ("holding", "log", "room", "spent", "txn")

    def __init__(self) -> None:
        self.txn: Any = None
        self.holding = False
        self.log: list[tuple[Callable[[Any], Any], Callable[[Any], Any], Any]] = []
        self.room = 0
        self.spent = 0


class _NotAllNew(Exception):
    """A bulk insert met a key already stored: undo the transaction, go one by one."""


class _Closed:
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (copy, doctest, inspect) is not use
            raise AttributeError(name)
        raise StorageError("this LMDB store is closed")


_CLOSED: Any = _Closed()


# -- the backend ----------------------------------------------------------------------


class LMDBStorage(Storage):
    """Elements in an LMDB environment, with secondary indexes kept in the same commits.

    Growth of the memory map: before a write starts, the map is grown (doubled, or
    more for a large batch) unless it leaves room for the estimated new data plus the
    whole used size (what copy-on-write may touch). A primitive called outside a
    transaction that still hits ``MapFullError`` is aborted and run again after
    growing. Inside ``with store.transaction():`` the block cannot be re-run, so every
    step run in it is recorded with a fingerprint of its result (for writes, a CRC of
    the bytes written, so nothing is copied); when the map fills up, the transaction
    is aborted, the map grown, and the recorded steps replayed in a new transaction.
    If another process changed what the block had read in between, or the caller
    changed an element it had passed in, the replay gives a different fingerprint
    and the transaction fails with ``StorageError`` (nothing written) instead of
    committing a mix. A write step that fails half-way inside a block voids the
    whole transaction.
    """

    scheme = "lmdb"

    def __init__(self, url: str, **options: Any) -> None:
        path, query = store_path(url)
        merged: dict[str, Any] = {**query, **options}
        super().__init__(url, **merged)
        map_size = _int_option(merged, "map_size", DEFAULT_MAP_SIZE)
        max_dbs = _int_option(merged, "max_dbs", DEFAULT_MAX_DBS)
        sync = _bool_option(merged, "sync", True)
        for key in self.indexes:
            _check_index_name(key)
        if len(self.indexes) + _FIXED_DBS > max_dbs:
            raise BadRequest(f"too many indexes for max_dbs={max_dbs}: raise max_dbs")
        self._h: Any = _CLOSED
        try:
            self._h = _acquire(path, map_size, max_dbs, sync)
            raw = self._read(_op_meta, self._h.meta)
            self._h.gate.enter()
            try:
                self._refresh_indexes(raw)
            finally:
                self._h.gate.exit()
            missing = [k for k in self.indexes if k not in self._h.index_dbs]
            if missing:
                self._build_indexes(missing)
        except (lmdb.Error, OSError) as e:
            self.close()
            raise self.storage_error("open", e) from e
        except BaseException:
            self.close()
            raise
        self.indexes = tuple(dict.fromkeys([*self.indexes, *self._h.index_dbs]))

    @property
    def path(self) -> str:
        """The environment's directory (absolute)."""
        return str(self._h.path)

    # -- primitives ---------------------------------------------------------------------

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        if len(ids) == 1:
            keys = [_key(ids[0])]
        else:
            try:
                keys = list(map(str.encode, ids))
            except UnicodeEncodeError:  # lone surrogates: kept as they are
                keys = [i.encode("utf-8", "surrogatepass") for i in ids]
            if max(map(len, keys), default=0) > MAX_KEY:
                keys = [_fit(k) for k in keys]
        h = self._h
        if h.local.block is None:
            # The common case, inlined: reading by id is what a tracker does most.
            gate = h.gate
            gate.enter()
            try:
                txn = h.env.begin()
                try:
                    raws = _op_get_raw(txn, h.main, keys)
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                raws = None
            finally:
                gate.exit()
            if raws is None:
                raws = self._read(self._op_get, keys)
        else:
            raws = self._read(self._op_get, keys)
        if None in raws:
            return [None if r is None else _loads(r) for r in raws]
        return list(map(_loads, raws))

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        sample = elements[:64]
        size = sum(len(encode(e, op)) for e in sample) * len(elements) // max(len(sample), 1)
        need = 2 * size + 160 * len(elements)
        elements = list(elements)
        try:
            return self._write(self._op_insert, (elements, op, True), need=need)
        except _NotAllNew:  # that write was undone whole: one by one this time
            return self._write(self._op_insert, (elements, op, False), need=need)

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        need = 0
        for p in patches:
            need += 2 * len(_dumps(dict(p.set))) + 1024  # fails here if a value is not JSON
        return self._write(self._op_patch, list(patches), need=need)

    def _delete_many(self, ids: list[str]) -> list[bool]:
        return self._write(self._op_delete, [element_key(i) for i in ids], need=64 * len(ids))

    def _scan(self) -> Iterator[Element]:
        if self._block() is not None:
            raws, _ = self._read(self._op_scan_chunk, None, None)
            yield from map(_loads, raws)
            return
        # Outside a transaction, read in chunks so no read transaction stays open while
        # the caller works (it would hold back page reuse and map resizes).
        after: bytes | None = None
        while True:
            raws, after = self._read(self._op_scan_chunk, after, 1000)
            yield from map(_loads, raws)
            if len(raws) < 1000:
                return

    def _find(self, query: Node, sort: Sort, skip: int, limit: int | None) -> list[str]:
        return self._read(self._op_find_ids, query, sort, skip, limit, buffers=True)

    def _find_elements(
        self, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        return self._read(
            self._op_find_elements,
            query,
            sort,
            skip,
            limit,
            buffers=True,
            fingerprint=_fingerprint_elements,
        )

    def _count(self, query: Node) -> int:
        return self._read(self._op_count, query, buffers=True)

    def _candidates(self, query: Node) -> list[Element]:
        return self._read(
            self._op_candidates, query, buffers=True, fingerprint=_fingerprint_elements
        )

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        return self._read(_op_changes, self._h, since, limit)

    def _last_seq(self) -> int:
        return self._read(_op_last_seq, self._h)

    def _horizon(self) -> int:
        return self._read(_op_horizon, self._h.meta)

    def _drop_tombstones(self, older_than_ms: int) -> int:
        return self._write(self._op_drop_tombstones, older_than_ms, need=1 << 16)

    def _ensure_index(self, key: str) -> None:
        try:
            _check_index_name(key)
            if self._block() is not None:
                raise BadRequest("ensure_index cannot run inside a transaction")
        except BadRequest:
            self.indexes = tuple(k for k in self.indexes if k != key)
            raise
        if key not in self._h.index_dbs:
            self._build_indexes([key])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        h = self._h
        if h.local.block is not None:
            yield  # nested: join the thread's open transaction
            return
        # Growing the map means replaying the block: leave it room for a large one
        # first (the map is address space; the file grows only as pages are written).
        self._ensure_room(BLOCK_ROOM)
        block = _Block()
        h.gate.enter()
        block.holding = True
        try:
            block.txn = self._begin_write()
            block.room = self._room()
        except BaseException:
            h.gate.exit()
            raise
        h.local.block = block
        try:
            yield
        except BaseException:
            h.local.block = None
            self._end_block(block)
            raise
        h.local.block = None
        try:
            while True:
                if block.txn is None:
                    raise StorageError("this transaction was aborted by an earlier failure")
                try:
                    block.txn.commit()
                    block.txn = None
                    break
                except lmdb.MapFullError:
                    block.txn = None  # a failed commit frees the transaction
                    self._regrow(block, 0, replay_only=True)
        finally:
            self._end_block(block)

    def _close(self) -> None:
        h, self._h = self._h, _CLOSED
        if h is _CLOSED:
            return
        with _OPEN_LOCK:
            h.refs -= 1
            if h.refs <= 0:
                _OPEN.pop(h.path, None)
                h.env.close()

    # -- steps run inside a transaction (txn first; also replayed after a map growth) --

    def _op_get(self, txn: Any, keys: list[bytes]) -> list[bytes | None]:
        return _op_get_raw(txn, self._h.main, keys)

    def _op_insert(
        self, txn: Any, arg: tuple[list[Element], str, bool], checked: bool = False
    ) -> Any:
        """Write new elements (``arg``: them, the op, whether to try the bulk path); an
        element that is not one raises, and nothing is written.

        The usual case, every key new and short, goes in bulk (see :meth:`_put_new`).
        Otherwise, in a transaction of our own, :class:`_NotAllNew` makes ``_write``
        undo it for the caller to run again one by one; inside a ``transaction()``
        block the bulk try runs in a nested transaction, undone on its own."""
        elements, op, bulk = arg
        crc = [0]
        if bulk and not checked:
            if self._put_new(txn, elements, op, None):
                return [True] * len(elements)
            raise _NotAllNew
        if bulk:
            child = self._h.env.begin(write=True, parent=txn)
            try:
                done = self._put_new(child, elements, op, crc)
            except BaseException:
                child.abort()
                raise
            if done:
                child.commit()
                return [True] * len(elements), crc[0]
            child.abort()
            crc[0] = 0
        h = self._h
        put, main = txn.put, h.main
        feed = _FeedWriter(txn, h)
        out = []
        for element in elements:
            key = _key(element["_id"])
            raw = encode(element, op)
            fresh = put(key, raw, db=main, overwrite=False)
            out.append(fresh)
            if checked:
                crc[0] = zlib.crc32(raw, crc[0])
            if fresh:
                feed.record(key, element["_id"], False)
                for name, db in h.index_dbs.items():
                    for ik in {index_key(v) for v in index_values(element, name)}:
                        put(ik, key, db=db)
        return (out, crc[0]) if checked else out

    def _put_new(self, txn: Any, elements: list[Element], op: str, crc: list[int] | None) -> bool:
        """Put every element and its index entries in bulk, a run of a few hundred at a
        time (holding them all costs more than the writes). False, with some written,
        when a key is already stored (or too long, or not UTF-8): the caller undoes the
        transaction. ``crc``, when given, gets the CRC of the JSON written.

        When the ids come sorted and after every stored one (fresh ULIDs, a restore of
        an export, which is in ``_id`` order), they are appended: LMDB then skips the
        search for each key's place."""
        h = self._h
        ids = list(map(id_of, elements))
        main = txn.cursor(db=h.main)
        append = _sorted_after(ids, main)
        feed = _FeedWriter(txn, h)
        indexes = [(name, txn.cursor(db=db)) for name, db in h.index_dbs.items()]
        for start in range(0, len(elements), RUN):
            run = elements[start : start + RUN]
            keys = _utf8(ids[start : start + RUN])
            if keys is None:
                return False
            values = encode_run(run, op)
            if crc is not None:  # a replay must write the same bytes (see _regrow)
                crc[0] = zlib.crc32(b"".join(values), crc[0])
            try:
                _, added = main.putmulti(zip(keys, values), overwrite=False, append=append)
            except lmdb.BadValsizeError:  # a key too long for LMDB
                return False
            if added != len(run):
                return False
            feed.record_new(keys, append)
            for name, cursor in indexes:
                _put_index(cursor, run, keys, name, append)
        return True

    def _op_patch(self, txn: Any, patches: list[Patch], checked: bool = False) -> Any:
        get, put, delete, main = txn.get, txn.put, txn.delete, self._h.main
        dbs = self._h.index_dbs
        feed = _FeedWriter(txn, self._h)
        out = []
        crc = 0
        for p in patches:
            key = element_key(p.id)
            raw = get(key, db=main)
            if raw is None:
                out.append(False)
                continue
            element = _loads(raw)
            touched = [n for n in dbs if n in p.set or n in p.unset]
            before = [{index_key(v) for v in index_values(element, n)} for n in touched]
            if not apply_patch(element, p):
                out.append(False)
                continue
            raw = _dumps(element)
            put(key, raw, db=main)
            feed.record(key, p.id, False)
            if checked:
                crc = zlib.crc32(raw, crc)
            for name, old in zip(touched, before):
                new = {index_key(v) for v in index_values(element, name)}
                for ik in old - new:
                    delete(ik, key, db=dbs[name])
                for ik in new - old:
                    put(ik, key, db=dbs[name])
            out.append(True)
        return (out, crc) if checked else out

    def _op_delete(self, txn: Any, keys: list[bytes], checked: bool = False) -> Any:
        get, delete, main = txn.get, txn.delete, self._h.main
        dbs = self._h.index_dbs.items()
        feed = _FeedWriter(txn, self._h)
        out = []
        for key in keys:
            raw = get(key, db=main)
            if raw is None:
                out.append(False)
                continue
            element = _loads(raw)
            for name, db in dbs:
                for ik in {index_key(v) for v in index_values(element, name)}:
                    delete(ik, key, db=db)
            delete(key, db=main)
            feed.record(key, element["_id"], True)
            out.append(True)
        return (out, 0) if checked else out

    def _op_drop_tombstones(self, txn: Any, older_than_ms: int, checked: bool = False) -> Any:
        h = self._h
        cursor = txn.cursor(db=h.by_seq)
        dropped, top = 0, _op_horizon(txn, h.meta)
        ok = cursor.first()
        while ok:
            value = cursor.value()
            if value[-9:-8] == _DEAD and _SEQ.unpack(value[-8:])[0] < older_than_ms:
                top = max(top, _SEQ.unpack(cursor.key())[0])
                txn.delete(_key(value[:-9].decode("utf-8", "surrogatepass")), db=h.by_id)
                ok = cursor.delete()  # moves to the next entry
                dropped += 1
            else:
                ok = cursor.next()
        if dropped:
            txn.put(META_HORIZON, _SEQ.pack(top), db=h.meta)
        return (dropped, dropped) if checked else dropped

    def _op_scan_chunk(
        self, txn: Any, after: bytes | None, size: int | None
    ) -> tuple[list[bytes], bytes | None]:
        """Up to ``size`` raw elements after the key ``after``, and the last key read."""
        cursor = txn.cursor(db=self._h.main)
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
        return out, last

    def _index_hits(self, txn: Any, name: str, values: tuple[Any, ...]) -> list[bytes]:
        """The element keys the index on ``name`` holds under any of ``values``, sorted."""
        cursor = txn.cursor(db=self._h.index_dbs[name])
        keys: set[bytes] = set()
        for v in values:
            try:
                ik = index_key(v)
            except TypeError:
                continue
            if cursor.set_key(ik):
                keys.update(map(bytes, cursor.iternext_dup(keys=False, values=True)))
        return sorted(keys)

    def _exact(self, query: Node) -> tuple[str, tuple[Any, ...]] | None:
        """``(key, values)`` when the index answers ``query`` exactly (no predicate to
        run): a lone ``Eq``/``In`` on an indexed top-level key."""
        if isinstance(query, Eq | In):
            return index_lookup(query, tuple(self._h.index_dbs))
        return None

    def _elements(self, txn: Any, query: Node) -> Iterator[Element] | list[Element]:
        """The elements ``query`` may match: through an index when it pins an indexed
        key to values, else every element (decoded lazily, as the cursor goes)."""
        h = self._h
        found = index_lookup(query, tuple(h.index_dbs))
        if found is None:
            return map(_loads, txn.cursor(db=h.main).iternext(keys=False, values=True))
        return self._fetch(txn, self._index_hits(txn, *found))

    def _fetch(self, txn: Any, keys: list[bytes]) -> list[Element]:
        return list(map(_loads, filter(None, _op_get_raw(txn, self._h.main, keys))))

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

    def _op_find_elements(
        self, txn: Any, query: Node, sort: Sort, skip: int, limit: int | None
    ) -> list[Element]:
        keys = self._exact_hits(txn, query, sort, skip, limit)
        if keys is not None:
            return self._fetch(txn, keys)
        return select(self._elements(txn, query), query, sort, skip, limit)

    def _op_find_ids(
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
        return [e["_id"] for e in self._op_find_elements(txn, query, sort, skip, limit)]

    def _op_count(self, txn: Any, query: Node) -> int:
        if isinstance(query, All):
            return int(txn.stat(self._h.main)["entries"])
        found = self._exact(query)
        if found is not None:
            return len(self._index_hits(txn, *found))
        from damas_core.query.predicate import to_predicate

        return sum(map(to_predicate(query), self._elements(txn, query)))

    def _op_candidates(self, txn: Any, query: Node) -> list[Element]:
        return list(self._elements(txn, query))

    # -- transactions, growth, replay ----------------------------------------------------

    def _block(self) -> _Block | None:
        return self._h.local.block

    def _read(
        self,
        op: Callable[..., Any],
        *args: Any,
        buffers: bool = False,
        fingerprint: Callable[[Any], Any] = _fingerprint,
    ) -> Any:
        """Run a read step: in the thread's write transaction if one is open (so it
        sees its uncommitted writes), else in a read-only transaction of its own."""
        h = self._h
        block = h.local.block
        if block is not None:
            return self._in_block(block, lambda txn: op(txn, *args), 0, fingerprint)
        gate = h.gate
        gate.enter()
        try:
            while True:
                try:
                    txn = h.env.begin(buffers=buffers)
                except lmdb.MapResizedError:
                    gate.exit()
                    try:
                        self._adopt_map()
                    finally:
                        gate.enter()
                    continue
                try:
                    return op(txn, *args)
                finally:
                    txn.abort()
        finally:
            gate.exit()

    def _write(self, op: Callable[..., Any], arg: Any, *, need: int) -> Any:
        """Run a write step atomically: in the thread's open transaction, or in one of
        its own, run again after growing the map if it fills up."""
        h = self._h
        block = h.local.block
        if block is not None:
            step = lambda txn: op(txn, arg, True)  # noqa: E731 - recorded for replay
            return self._in_block(block, step, need, _fingerprint_write)[0]
        full = False
        while True:
            self._ensure_room(need, double=full)
            h.gate.enter()
            try:
                txn = self._begin_write()
                try:
                    result = op(txn, arg)
                    txn.commit()
                    return result
                except BaseException:
                    txn.abort()
                    raise
            except lmdb.MapFullError:
                full = True
            finally:
                h.gate.exit()

    def _in_block(
        self,
        block: _Block,
        step: Callable[[Any], Any],
        need: int,
        fingerprint: Callable[[Any], Any],
    ) -> Any:
        """Run ``step`` in the block's transaction and record it for a replay."""
        if block.txn is None:
            raise StorageError("this transaction was aborted by an earlier failure")
        if need and need > block.room - block.spent:
            self._regrow(block, need)
        while True:
            try:
                result = step(block.txn)
                break
            except lmdb.MapFullError:
                self._regrow(block, need, full=True)
            except BaseException:
                if need:  # a write step failed half-way: the whole transaction is void
                    block.txn.abort()
                    block.txn = None
                raise
        block.spent += need
        block.log.append((step, fingerprint, fingerprint(result)))
        return result

    def _regrow(
        self, block: _Block, need: int, *, full: bool = False, replay_only: bool = False
    ) -> None:
        """Abort the block's transaction, grow the map, and replay its steps in a new
        one; ``StorageError`` (transaction closed) if a step now gives another result
        (another process changed what the block read, or the caller changed elements
        it had passed in)."""
        h = self._h
        if block.txn is not None:
            block.txn.abort()
            block.txn = None
        if block.holding:
            h.gate.exit()
            block.holding = False
        full = full or replay_only
        while True:
            self._ensure_room(block.spent + need, double=full)
            h.gate.enter()
            block.holding = True
            txn = self._begin_write()
            try:
                for step, fingerprint, expected in block.log:
                    if fingerprint(step(txn)) != expected:
                        raise StorageError(
                            "transaction aborted: the LMDB map had to grow and the data "
                            "this transaction had read or written changed meanwhile; retry it"
                        )
            except lmdb.MapFullError:
                txn.abort()
                h.gate.exit()
                block.holding = False
                full = True
                continue
            except BaseException:
                txn.abort()
                raise
            block.txn = txn
            block.room = self._room()
            return

    def _end_block(self, block: _Block) -> None:
        if block.txn is not None:
            block.txn.abort()
            block.txn = None
        if block.holding:
            self._h.gate.exit()
            block.holding = False

    def _begin_write(self) -> Any:
        """A write transaction that knows every index (call with the gate entered)."""
        h = self._h
        while True:
            try:
                txn = h.env.begin(write=True)
            except lmdb.MapResizedError:
                h.gate.exit()
                try:
                    self._adopt_map()
                finally:
                    h.gate.enter()
                continue
            # Another process may have added an index: maintain it too.
            raw = txn.get(META_INDEXES, db=h.meta)
            if raw == h.meta_raw:
                return txn
            txn.abort()
            self._refresh_indexes(raw)

    def _room(self) -> int:
        """Bytes of the map a new write may fill: what is left once the used size is
        reserved a second time, since copy-on-write may rewrite every used page."""
        h = self._h
        info = h.env.info()
        used = (info["last_pgno"] + 1) * h.psize
        return int(info["map_size"]) - 2 * used - _SLACK

    def _ensure_room(self, need: int, *, double: bool = False) -> None:
        if not double and self._room() >= need:
            return
        h = self._h
        with h.gate.alone():
            info = h.env.info()
            size = int(info["map_size"])
            used = (info["last_pgno"] + 1) * h.psize
            room = size - 2 * used - _SLACK
            if room >= need and not double:
                return  # another thread grew it meanwhile
            new = max(size * 2, 2 * used + need + _SLACK)
            new = -(-new // (1 << 20)) * (1 << 20)
            h.env.set_mapsize(new)

    def _adopt_map(self) -> None:
        """Take the map size another process has grown the store to."""
        with self._h.gate.alone():
            self._h.env.set_mapsize(0)

    # -- indexes ----------------------------------------------------------------------

    def _refresh_indexes(self, raw: bytes | None) -> None:
        """Open the index sub-databases that the ``meta`` list ``raw`` names (whoever
        created them). Call with the gate entered and no transaction open."""
        h = self._h
        with h.lock:
            names = _loads(raw) if raw is not None else []
            dbs = dict(h.index_dbs)
            for name in names:
                if name not in dbs:
                    dbs[name] = h.env.open_db(_index_db_name(name), dupsort=True)
            h.index_dbs = dbs
            h.meta_raw = raw
            self.indexes = tuple(dict.fromkeys([*self.indexes, *dbs]))

    def _build_indexes(self, names: list[str]) -> None:
        """Create and fill the indexes for ``names`` in one write transaction."""
        h = self._h
        if len(h.index_dbs) + len(names) + _FIXED_DBS > h.max_dbs:
            raise BadRequest(
                f"too many indexes for max_dbs={h.max_dbs}: reopen with a larger max_dbs"
            )
        full = False
        while True:
            self._ensure_room(0, double=full)
            h.gate.enter()
            try:
                with h.lock:
                    txn = self._begin_write()
                    try:
                        raw = txn.get(META_INDEXES, db=h.meta)
                        stored = _loads(raw) if raw is not None else []
                        new = [n for n in dict.fromkeys(names) if n not in stored]
                        dbs = {
                            n: h.env.open_db(_index_db_name(n), txn=txn, dupsort=True) for n in new
                        }
                        if dbs:
                            self._fill_indexes(txn, dbs)
                        meta_raw = _dumps([*stored, *new])
                        txn.put(META_INDEXES, meta_raw, db=h.meta)
                        txn.commit()
                    except BaseException:
                        txn.abort()
                        raise
                    h.index_dbs = {**h.index_dbs, **dbs}
                    h.meta_raw = meta_raw
                    return
            except lmdb.MapFullError:
                full = True
            finally:
                h.gate.exit()

    def _fill_indexes(self, txn: Any, dbs: dict[str, Any]) -> None:
        put = txn.put
        markers = [(name, db, _dumps(name) + b":") for name, db in dbs.items()]
        for key, raw in txn.cursor(db=self._h.main).iternext():
            if not any(m in raw for _, _, m in markers):
                continue  # cheap test: the key name does not even occur in the JSON
            element = _loads(raw)
            for name, db, _ in markers:
                for ik in {index_key(v) for v in index_values(element, name)}:
                    put(ik, bytes(key), db=db)


# -- the change feed ----------------------------------------------------------------------

_SEQ = struct.Struct(">Q")  # big-endian: byte order is number order
_DEAD = b"\xff"  # never in UTF-8: what follows an id in a tombstone's entry


class _FeedWriter:
    """Feed entries of one write step: ``feed:seq`` maps a seq (8 bytes, big-endian)
    to the id in UTF-8, followed for a tombstone by ``0xFF`` and the deletion time
    (milliseconds, 8 bytes);
    ``feed:id`` maps an element key to its one entry's seq. The next seq is read
    from the write transaction itself (the last ``feed:seq`` key, or the horizon if
    higher), so writers in every process of the environment number in commit order."""

    __slots__ = ("by_id", "by_seq", "seq")

    def __init__(self, txn: Any, h: _Env) -> None:
        self.by_seq = txn.cursor(db=h.by_seq)
        self.by_id = txn.cursor(db=h.by_id)
        last = _SEQ.unpack(self.by_seq.key())[0] if self.by_seq.last() else 0
        self.seq = max(last, _op_horizon(txn, h.meta))

    def record(self, key: bytes, id: str, deleted: bool) -> None:
        """The element under ``key`` (its ``_id`` is ``id``) changed: its entry moves
        to the next seq."""
        self.seq += 1
        seq_key = _SEQ.pack(self.seq)
        old = self.by_id.replace(key, seq_key)
        if old is not None and self.by_seq.set_key(old):
            self.by_seq.delete()
        entry = id.encode("utf-8", "surrogatepass")
        if deleted:
            entry += _DEAD + _SEQ.pack(now_ms())
        self.by_seq.put(seq_key, entry, append=True)

    def record_new(self, keys: list[bytes], append: bool) -> None:
        """Entries for elements just stored under ``keys`` (their UTF-8 ids), in bulk;
        ``append`` when the keys are sorted (and after every element key)."""
        by_id = self.by_id
        append = append and (not by_id.last() or keys[0] > by_id.key())  # tombstones
        first = self.seq + 1
        self.seq += len(keys)
        seq_keys = list(map(_SEQ.pack, range(first, self.seq + 1)))
        _, added = by_id.putmulti(zip(keys, seq_keys), overwrite=False, append=append)
        if added != len(keys):  # some ids left a tombstone: replace it
            for key, seq_key in zip(keys, seq_keys):
                old = self.by_id.replace(key, seq_key)
                if old is not None and old != seq_key and self.by_seq.set_key(old):
                    self.by_seq.delete()
        self.by_seq.putmulti(zip(seq_keys, keys), append=True)


def _op_horizon(txn: Any, meta: Any) -> int:
    raw = txn.get(META_HORIZON, db=meta)
    return _SEQ.unpack(raw)[0] if raw is not None else 0


def _op_last_seq(txn: Any, h: _Env) -> int:
    """The last seq given: the last ``feed:seq`` key, or the horizon if compaction
    dropped it."""
    cursor = txn.cursor(db=h.by_seq)
    last = _SEQ.unpack(cursor.key())[0] if cursor.last() else 0
    return max(last, _op_horizon(txn, h.meta))


def _op_changes(txn: Any, h: _Env, since: int, limit: int) -> tuple[int, list[Change]]:
    cursor = txn.cursor(db=h.by_seq)
    out: list[Change] = []
    if cursor.set_range(_SEQ.pack(since + 1)):
        unpack = _SEQ.unpack
        for key, value in cursor:
            if len(out) == limit:
                return out[-1][0], out
            dead = value[-9:-8] == _DEAD
            id = (value[:-9] if dead else value).decode("utf-8", "surrogatepass")
            out.append((unpack(key)[0], id, dead))
    return _op_last_seq(txn, h), out


# -- helpers ----------------------------------------------------------------------------


def _op_get_raw(txn: Any, db: Any, keys: list[bytes]) -> list[bytes | None]:
    """The stored JSON under each key, ``None`` where absent."""
    if len(keys) == 1:
        return [txn.get(keys[0], db=db)]
    found = txn.cursor(db=db).getmulti(keys)  # in order, absent keys left out
    if len(found) == len(keys):
        return list(map(itemgetter(1), found))
    get = txn.get
    return [get(k, db=db) for k in keys]


def _index_pairs(elements: list[Element], name: str) -> Iterator[tuple[bytes, bytes]]:
    """``(index key, element key)`` for every value ``elements`` hold under ``name``."""
    for e in elements:
        if name in e:
            key = _key(e["_id"])
            for ik in {index_key(v) for v in index_values(e, name)}:
                yield ik, key


def _put_index(
    cursor: Any, elements: list[Element], keys: list[bytes], name: str, append: bool
) -> None:
    """Put the index entries of ``elements`` (stored under ``keys``) for the key
    ``name``: in bulk when every value is a string, else one by one (an entry is a
    set member: putting one twice keeps one). ``append`` when every key is after all
    the stored ones, in order (see ``_put_new``)."""
    has = list(map(contains, elements, repeat(name)))
    if not all(has):
        elements, keys = list(compress(elements, has)), list(compress(keys, has))
    try:
        values = list(map(itemgetter(name), elements))
        index_keys = _utf8(values, prefix="s")  # TypeError unless every value is a string
    except TypeError:
        index_keys = None
    if index_keys is not None:
        try:
            _, added = cursor.putmulti(zip(index_keys, keys), dupdata=True, append=append)
        except lmdb.BadValsizeError:  # a value too long for a key: hashed, one by one
            pass
        else:
            if added == len(keys):
                return
    cursor.putmulti(_index_pairs(elements, name), dupdata=True)


def _utf8(values: list[str], prefix: str = "") -> list[bytes] | None:
    """``prefix + value`` of each value in UTF-8, encoded together; None when one
    holds a NUL or is not UTF-8. TypeError unless every value is a string."""
    encoded = (prefix + f"\x00{prefix}".join(values)).encode("utf-8", "surrogatepass")
    keys = encoded.split(b"\x00")
    return keys if len(keys) == len(values) and values else None


def _sorted_after(ids: list[str], cursor: Any) -> bool:
    """True when ``ids`` are in increasing order and after every key ``cursor``'s
    database holds (so that they may be appended)."""
    if not ids or not all(map(lt, ids, islice(ids, 1, None))):
        return False
    return not cursor.last() or ids[0].encode("utf-8", "surrogatepass") > cursor.key()


def _acquire(path: str, map_size: int, max_dbs: int, sync: bool) -> _Env:
    os.makedirs(path, exist_ok=True)
    real = os.path.realpath(path)
    with _OPEN_LOCK:
        h = _OPEN.get(real)
        if h is not None and h.gate.forked:
            raise StorageError(
                "an LMDB store cannot be used across fork(): open it in a child process "
                "that did not inherit it (start it with the 'spawn' method)"
            )
        if h is None:
            h = _OPEN[real] = _Env(real, map_size, max_dbs, sync)
        h.refs += 1
        return h


def _op_meta(txn: Any, meta: Any) -> bytes | None:
    return txn.get(META_INDEXES, db=meta)


def _index_db_name(name: str) -> bytes:
    return INDEX_PREFIX + name.encode("utf-8", "surrogatepass")


def _check_index_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise BadRequest(f"an index names a top-level key (a non-empty string), not {name!r}")
    if len(_index_db_name(name)) > MAX_INDEX_NAME:
        raise BadRequest(f"index key too long for LMDB: {name[:40]!r}…")


def _int_option(options: dict[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number <= 0:
        raise BadRequest(f"LMDB option {name} must be a positive integer, not {value!r}")
    return number


def _bool_option(options: dict[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadRequest(f"LMDB option {name} must be true or false, not {value!r}")


__all__ = ["DEFAULT_MAP_SIZE", "LMDBStorage", "element_key", "index_key", "store_path"]
