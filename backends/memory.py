"""``memory://``: a faithful in-process backend for tests and throw-away trackers.

Elements are kept as JSON bytes, so every read returns a fresh object and no caller
can change stored state through a dict it holds (the same round trip the persistent
backends make). Not shared between processes; threads are serialized by one lock.

The change feed is a dict of each id's latest ``(seq, deleted, deleted_ms)`` plus a
log of ``(seq, id)`` in seq order, read with a binary search; entries a later write
made stale are skipped when read and dropped when they outnumber the live ones.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> t.create({"_id": "/a.txt"})["_id"]
'/a.txt'
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import orjson
from damas_core.backends.base import (
    Change,
    Element,
    Patch,
    Storage,
    insert_encoded,
    now_ms,
    patch_encoded,
)


class MemoryStorage(Storage):
    """Elements in a dict of JSON bytes; a transaction snapshots the state to roll back."""

    scheme = "memory"

    def __init__(self, url: str = "memory://", **options: object) -> None:
        super().__init__(url, **options)
        self._data: dict[str, bytes] = {}
        self._feed: dict[str, tuple[int, bool, int]] = {}  # id -> (seq, deleted, ms)
        self._log: list[tuple[int, str]] = []  # (seq, id), seq increasing; may be stale
        self._seq = 0
        self._dropped = 0  # the horizon
        self._lock = threading.RLock()
        self._depth = 0

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        with self._lock:
            raw = [self._data.get(i) for i in ids]
        return [None if r is None else orjson.loads(r) for r in raw]

    def _put(self, id: str, raw: bytes) -> None:
        self._data[id] = raw
        self._record(id, False)

    def _record(self, id: str, deleted: bool) -> None:
        self._seq += 1
        self._feed[id] = (self._seq, deleted, now_ms() if deleted else 0)
        self._log.append((self._seq, id))

    def _insert_many(self, elements: Sequence[Element], op: str) -> list[bool]:
        with self._transaction():
            return insert_encoded(self._data, self._put, elements, op)

    def _patch_many(self, patches: Sequence[Patch]) -> list[bool]:
        with self._transaction():
            return patch_encoded(self._data, self._put, patches)

    def _delete_many(self, ids: list[str]) -> list[bool]:
        with self._transaction():
            out = []
            for i in ids:
                gone = self._data.pop(i, None) is not None
                if gone:
                    self._record(i, True)
                out.append(gone)
            return out

    def _scan(self) -> Iterator[Element]:
        with self._lock:
            items = sorted(self._data.items())
        for _, raw in items:
            yield orjson.loads(raw)

    # -- the change feed ------------------------------------------------------------

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        with self._lock:
            out: list[Change] = []
            feed = self._feed
            log = self._log
            for k in range(bisect.bisect_left(log, (since + 1,)), len(log)):
                seq, id = log[k]
                entry = feed.get(id)
                if entry is None or entry[0] != seq:
                    continue  # superseded by a later write, or a dropped tombstone
                if len(out) == limit:
                    return out[-1][0], out
                out.append((seq, id, entry[1]))
            return self._seq, out

    def _last_seq(self) -> int:
        return self._seq

    def _horizon(self) -> int:
        return self._dropped

    def _drop_tombstones(self, older_than_ms: int) -> int:
        with self._transaction():
            old = [(s, i) for i, (s, dead, ms) in self._feed.items() if dead and ms < older_than_ms]
            for seq, id in old:
                del self._feed[id]
                self._dropped = max(self._dropped, seq)
            return len(old)

    def _compact(self) -> None:
        """Drop stale log entries once they outnumber the live ones (amortized O(1))."""
        if len(self._log) > 2 * len(self._feed) + 1024:
            self._log = sorted((s, i) for i, (s, _, _) in self._feed.items())

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
            snapshot = (dict(self._data), dict(self._feed), len(self._log), self._seq)
            dropped = self._dropped
            self._depth = 1
            try:
                yield
            except BaseException:
                self._data, self._feed, size, self._seq = snapshot
                del self._log[size:]
                self._dropped = dropped
                raise
            finally:
                self._depth = 0
            self._compact()
