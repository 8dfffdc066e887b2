"""``tinydb://``: elements in one human-editable JSON file in TinyDB's format.

URLs: ``tinydb:///abs/path/db.json`` (absolute) or ``tinydb://relative/db.json``
(relative to the working directory at open). Option ``table`` (or ``?table=``) picks
the TinyDB table, ``_default`` by default; ``sync=False`` (or ``?sync=false``) skips
the fsyncs (see below). The file stays readable and writable by
``tinydb.TinyDB``: ``{"_default": {"1": {"_id": ...}, "2": {...}}}``, written one
element per line so that a person can edit it and error positions mean something;
other tables in the file are kept as they are.

What TinyDB itself does not give, and this backend does:

- **Fast reads.** The elements live in memory keyed by ``_id``: a read by id is a dict
  lookup, and ``#parent``, ``src_id``, ``tgt_id`` (plus the ``indexes`` option) have
  in-memory secondary indexes. Before every read, one ``stat`` of the file tells
  whether another process (or a person) changed it, in which case it is reloaded.
- **One write per operation.** A multi-element call, or a whole ``transaction()``
  block, rewrites the file once.
- **Atomic, durable writes.** The new content goes to a temporary file in the same
  directory, is fsynced, replaces the file with ``os.replace`` and the directory is
  fsynced: a crash leaves the old file or the new one, never a mix. With
  ``sync=False`` nothing is fsynced: a killed process still leaves a whole file, a
  machine crash may lose the last writes (as with TinyDB itself, which never syncs).
- **Several processes.** Each write transaction holds an exclusive ``fcntl`` lock on
  ``<file>.lock`` and first reloads the file if it changed, so concurrent writers
  from any number of processes never lose each other's updates.
- **A broken file is never overwritten.** A file that is not valid JSON, or not in
  TinyDB's shape, gives a :class:`~damas_core.errors.StorageError` naming the file
  and the line and column, and nothing is written until it is fixed.

The change feed lives in the same file, so it is written in the same atomic replace
as the elements: the table ``~changes:<table>`` holds one document,
``{"horizon": h, "changes": [[seq, _id, deleted, deletion ms], ...]}``, one entry per
id in seq order. Seqs are taken under the process lock after reloading the file, so
writers in every process number in commit order. An element found in the file without
a live entry (a store made before the feed, or added by hand) is numbered when the
file is loaded, in ``_id`` order, as is the tombstone of an entry whose element is
gone; a change of content made by hand is not seen.

Each write rewrites the whole file: cost grows with the store (use LMDB or SQLite for
large trackers), but a read never touches the disk beyond one ``stat``.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "db.json")
>>> store = TinyDBStorage(f"tinydb://{path}")
>>> store.insert_many([{"_id": "/a", "n": 1}])
[True]
>>> from tinydb import TinyDB
>>> TinyDB(path).all()
[{'_id': '/a', 'n': 1}]
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from damas_core.backends.base import (
    Change,
    Element,
    Patch,
    Storage,
    index_lookup,
    index_values,
    insert_encoded,
    patch_encoded,
)
from damas_core.backends.feed import ChangeLog

from damas_core.errors import BadRequest, StorageError
from damas_core.ordering import bracket
from damas_core.query.ast import Node

DEFAULT_TABLE = "_default"
FEED_TABLE = "~changes:"  # + the elements' table

# The identity of a file's content as seen by stat: another process replacing the file
# changes the inode, a person editing it in place changes its size or mtime.
_Signature = tuple[int, int, int, int]


def path_from_url(url: str) -> str:
    """The absolute file path a ``tinydb://`` URL names.

    >>> path_from_url("tinydb:///srv/damas/db.json")
    '/srv/damas/db.json'
    """
    parts = urlsplit(url)
    path = parts.netloc + parts.path
    if not path:
        raise BadRequest(f"a TinyDB URL names a file: 'tinydb:///path/db.json', not {url!r}")
    return os.path.abspath(path)


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _index_key(value: Any) -> tuple[int, Any]:
    # The bracket keeps True apart from 1 (equal in Python), while 1 and 1.0 meet.
    return (bracket(value), value)


class TinyDBStorage(Storage):
    """A TinyDB JSON file with an in-memory map, atomic writes and a process lock."""

    scheme = "tinydb"
    shared = False  # one JSON file, rewritten by the process holding it

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.path = path_from_url(url)
        params = dict(parse_qsl(urlsplit(url).query))
        self.table = str(options.get("table") or params.get("table") or DEFAULT_TABLE)
        sync = options.get("sync", params.get("sync", True))
        # sync=False skips the fsyncs: writes stay atomic (a killed process leaves the
        # old file or the new one), but a machine crash may lose the last ones.
        self.sync = (
            sync if isinstance(sync, bool) else str(sync).lower() not in ("0", "false", "no")
        )
        self._directory = os.path.dirname(self.path)
        self._lock = threading.RLock()
        self._depth = 0
        # _id -> the element's JSON; _id -> TinyDB document id; _id -> its line in the file.
        self._raw: dict[str, bytes] = {}
        self._tid: dict[str, int] = {}
        self._lines: dict[str, bytes] = {}
        # The lines joined, as the file holds them; kept up to date while writes only
        # add elements (the usual create), rebuilt after any other change.
        self._body: bytearray | None = None
        self._next_tid = 1
        self._other_tables: dict[str, Any] = {}
        self._signature: _Signature | None = None
        self._index: dict[str, dict[tuple[int, Any], set[str]]] | None = None
        self._undo: dict[str, tuple[bytes, int] | None] | None = None
        self._undo_next_tid = 1
        self._feed = ChangeLog()
        self._feed_before: Any = None  # the feed's snapshot while a transaction runs
        try:
            os.makedirs(self._directory, exist_ok=True)
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageError(f"TinyDB store {self.path} cannot be opened: {e}") from e
        try:
            with self._file_lock():
                self._remove_stale_temporaries()
                self._refresh()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- the file -------------------------------------------------------------------------

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _remove_stale_temporaries(self) -> None:
        # Called with the file lock held: no writer is busy, so any temporary file
        # left is from a writer that died before its os.replace.
        prefix = glob.escape(os.path.join(self._directory, f".{os.path.basename(self.path)}."))
        for leftover in glob.glob(prefix + "*.tmp"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass

    def _refresh(self) -> None:
        """Reload the file if it changed since it was last read or written."""
        try:
            sig: _Signature | None = _signature(os.stat(self.path))
        except FileNotFoundError:
            sig = None
        if sig != self._signature:
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                sig: _Signature | None = _signature(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            sig, data = None, b""
        content = self._parse(data) if data.strip() else {}
        table = content.pop(self.table, {})
        feed = self._read_feed(content.pop(FEED_TABLE + self.table, None))
        if not isinstance(table, dict):
            raise self._format_error(f"table {self.table!r} is not an object")
        raw: dict[str, bytes] = {}
        tids: dict[str, int] = {}
        lines: dict[str, bytes] = {}
        where: dict[str, str] = {}
        for doc_id, element in table.items():
            try:
                tid = int(doc_id)
            except ValueError:
                raise self._format_error(
                    f"document key {doc_id!r} in table {self.table!r} is not a number"
                ) from None
            if not isinstance(element, dict):
                raise self._format_error(
                    f"document {doc_id} in table {self.table!r} is not an object"
                )
            id_ = element.get("_id")
            if not isinstance(id_, str) or not id_:
                raise self._format_error(
                    f"document {doc_id} in table {self.table!r} has no string _id"
                )
            if id_ in where:
                raise self._format_error(
                    f"documents {where[id_]} and {doc_id} in table {self.table!r} "
                    f"have the same _id {id_!r}"
                )
            where[id_] = doc_id
            encoded = orjson.dumps(element)
            raw[id_] = encoded
            tids[id_] = tid
            lines[id_] = b'"%d": %b' % (tid, encoded)
        self._raw, self._tid, self._lines = raw, tids, lines
        unnumbered = sorted(i for i in raw if feed.entries.get(i, (0, i, True))[2])
        gone = [i for i, e in feed.entries.items() if not e[2] and i not in raw]
        for id_ in unnumbered:
            feed.record(id_, False)
        for id_ in gone:
            feed.record(id_, True)
        self._feed = feed
        self._body = None
        self._next_tid = max(tids.values(), default=0) + 1
        self._other_tables = content
        self._index = None  # rebuilt on first use
        self._signature = sig

    def _read_feed(self, table: Any) -> ChangeLog:
        """The feed from its table (``None``: none yet)."""
        if table is None:
            return ChangeLog()
        doc = table.get("1") if isinstance(table, dict) else None
        try:
            entries = [(s, i, d, t) for s, i, d, t in doc["changes"]]
            horizon = doc["horizon"]
            ok = all(
                type(s) is int and type(i) is str and type(d) is bool and type(t) is int
                for s, i, d, t in entries
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or type(horizon) is not int:
            raise self._format_error(f"table {FEED_TABLE + self.table!r} is not a change feed")
        return ChangeLog(entries, horizon)

    def _parse(self, data: bytes) -> dict[str, Any]:
        try:
            content = orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson is fast; the standard parser gives the line and column to fix.
            try:
                json.loads(data.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise self._format_error(f"invalid UTF-8 at byte {e.start}") from None
            except json.JSONDecodeError as e:
                raise self._format_error(
                    f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
                ) from None
            raise self._format_error("invalid JSON") from None
        if not isinstance(content, dict):
            raise self._format_error("the file must hold a JSON object of tables")
        return content

    def _format_error(self, reason: str) -> StorageError:
        return StorageError(
            f"TinyDB store {self.path} is broken: {reason}. Fix the file by hand or restore "
            "it; it is left untouched until then.",
            op="open",
        )

    def _serialize(self) -> list[bytes | memoryview]:
        """The file's content, in pieces written one after the other (no big copy)."""
        head = b"{%b: {\n" % orjson.dumps(self.table)
        if self._body is None:
            self._body = bytearray(b",\n".join(self._lines.values()))
        body = memoryview(self._body)
        feed = self._feed
        tables = {
            **self._other_tables,
            FEED_TABLE + self.table: {
                "1": {"horizon": feed.horizon, "changes": list(feed.entries.values())}
            },
        }
        tail = b"".join(
            b",\n%b: %b" % (orjson.dumps(name), orjson.dumps(table))
            for name, table in tables.items()
        )
        return [head, body, b"\n}" + tail + b"}\n"]

    def _write(self) -> None:
        """Replace the file atomically and durably with the in-memory content."""
        data = self._serialize()
        try:
            mode = os.stat(self.path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=self._directory
        )
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.writelines(data)
                f.flush()
                if self.sync:
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if self.sync:  # the rename itself is durable once the directory is
            dir_fd = os.open(self._directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        # We hold the file lock: nobody else replaced the file since.
        self._signature = _signature(os.stat(self.path))

    # -- in-memory state --------------------------------------------------------------

    def _put(self, id_: str, encoded: bytes | None) -> None:
        """Store (or with ``None`` remove) one element, keeping undo log and indexes."""
        undo = self._undo
        assert undo is not None, "writes happen inside a transaction"
        if id_ not in undo:
            old = self._raw.get(id_)
            undo[id_] = None if old is None else (old, self._tid[id_])
        if self._index is not None:
            self._unindex(id_)
        self._feed.record(id_, encoded is None)
        if encoded is None:
            del self._raw[id_], self._tid[id_], self._lines[id_]
            self._body = None
            return
        tid = self._tid.get(id_)
        line = b'"%d": %b' % (tid or self._next_tid, encoded)
        if tid is None:
            tid = self._tid[id_] = self._next_tid
            self._next_tid += 1
            if self._body is not None:  # a new last line
                self._body += b",\n" + line if self._body else line
        else:
            self._body = None
        self._raw[id_] = encoded
        self._lines[id_] = line
        if self._index is not None:
            self._index_one(id_)

    def _rollback(self) -> None:
        self._body = None
        undo = self._undo or {}
        for id_, prior in undo.items():
            if self._index is not None and id_ in self._raw:
                self._unindex(id_)
            if prior is None:
                self._raw.pop(id_, None)
                self._tid.pop(id_, None)
                self._lines.pop(id_, None)
                continue
            encoded, tid = prior
            self._raw[id_] = encoded
            self._tid[id_] = tid
            self._lines[id_] = b'"%d": %b' % (tid, encoded)
            if self._index is not None:
                self._index_one(id_)
        self._next_tid = self._undo_next_tid
        self._feed.restore(self._feed_before)

    def _indexes(self) -> dict[str, dict[tuple[int, Any], set[str]]]:
        if self._index is None:
            self._index = {key: {} for key in self.indexes}
            for id_ in self._raw:
                self._index_one(id_)
        return self._index

    def _index_one(self, id_: str) -> None:
        element = orjson.loads(self._raw[id_])
        for key, table in (self._index or {}).items():
            for v in index_values(element, key):
                table.setdefault(_index_key(v), set()).add(id_)

    def _unindex(self, id_: str) -> None:
        raw = self._raw.get(id_)
        if raw is None:
            return
        element = orjson.loads(raw)
        for key, table in (self._index or {}).items():
            for v in index_values(element, key):
                ids = table.get(_index_key(v))
                if ids is not None:
                    ids.discard(id_)

    # -- primitives -------------------------------------------------------------------

    def _fresh(self) -> None:
        """Before a read: pick up other processes' writes (not inside our own block)."""
        if not self._depth:
            self._refresh()

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        with self._lock:
            self._fresh()
            found = [self._raw.get(i) for i in ids]
        return [None if r is None else orjson.loads(r) for r in found]

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        with self._transaction():
            return insert_encoded(self._raw, self._put, elements, op)

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        with self._transaction():
            return patch_encoded(self._raw, self._put, patches)

    def _delete_many(self, ids: list[str]) -> list[bool]:
        with self._transaction():
            out = []
            for i in ids:
                present = i in self._raw
                if present:
                    self._put(i, None)
                out.append(present)
            return out

    def _scan(self) -> Iterator[Element]:
        with self._lock:
            self._fresh()
            items = sorted(self._raw.items())
        for _, raw in items:
            yield orjson.loads(raw)

    def _candidates(self, query: Node) -> Iterable[Element]:
        with self._lock:
            self._fresh()
            hit = index_lookup(query, self.indexes)
            if hit is None:
                found = list(self._raw.values())
            else:
                key, values = hit
                table = self._indexes()[key]
                ids: set[str] = set()
                for v in values:
                    ids |= table.get(_index_key(v), set())
                found = [self._raw[i] for i in ids]
        return (orjson.loads(r) for r in found)

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        with self._lock:
            self._fresh()
            return self._feed.changes(since, limit)

    def _last_seq(self) -> int:
        with self._lock:
            self._fresh()
            return self._feed.seq

    def _horizon(self) -> int:
        with self._lock:
            self._fresh()
            return self._feed.horizon

    def _drop_tombstones(self, older_than_ms: int) -> int:
        with self._transaction():
            return self._feed.drop_tombstones(older_than_ms)

    def _ensure_index(self, key: str) -> None:
        with self._lock:
            if self._index is not None and key not in self._index:
                self._index[key] = {}
                for id_ in self._raw:
                    self._index_one(id_)

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
            with self._file_lock():
                self._refresh()  # apply our writes on top of every other process's
                self._depth = 1
                self._undo = {}
                self._undo_next_tid = self._next_tid
                self._feed_before = before = self._feed.snapshot()
                try:
                    yield
                    if self._undo or self._feed.horizon != before[2]:
                        self._write()
                except BaseException:
                    self._rollback()
                    raise
                finally:
                    self._depth = 0
                    self._undo = None
                    self._feed_before = None
                self._feed.compact()

    def _close(self) -> None:
        with self._lock:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1


__all__ = ["DEFAULT_TABLE", "TinyDBStorage", "path_from_url"]
