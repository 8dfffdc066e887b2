"""``memory://``: a faithful in-process backend for tests and throw-away trackers.

Elements are kept as JSON bytes, so every read returns a fresh object and no caller
can change stored state through a dict it holds (the same round trip the persistent
backends make). Not shared between processes; threads are serialized by one lock.

The change feed is a :class:`~damas_core.backends.feed.ChangeLog`.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> t.create({"_id": "/a.txt"})["_id"]
'/a.txt'
"""

from __future__ import annotations

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
    patch_encoded,
)
from damas_core.backends.feed import ChangeLog


class MemoryStorage(Storage):
    """Elements in a dict of JSON bytes; a transaction snapshots them and the feed to
    roll back."""

    scheme = "memory"
    shared = False  # each process has its own

    def __init__(self, url: str = "memory://", **options: object) -> None:
        super().__init__(url, **options)
        self._data: dict[str, bytes] = {}
        self._feed = ChangeLog()
        self._lock = threading.RLock()
        self._depth = 0

    def _get_many(self, ids: list[str]) -> list[Element | None]:
        with self._lock:
            raw = [self._data.get(i) for i in ids]
        return [None if r is None else orjson.loads(r) for r in raw]

    def _put(self, id: str, raw: bytes) -> None:
        self._data[id] = raw
        self._feed.record(id, False)

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
                    self._feed.record(i, True)
                out.append(gone)
            return out

    def _scan(self) -> Iterator[Element]:
        with self._lock:
            items = sorted(self._data.items())
        for _, raw in items:
            yield orjson.loads(raw)

    def _changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        with self._lock:
            return self._feed.changes(since, limit)

    def _last_seq(self) -> int:
        return self._feed.seq

    def _horizon(self) -> int:
        return self._feed.horizon

    def _drop_tombstones(self, older_than_ms: int) -> int:
        with self._transaction():
            return self._feed.drop_tombstones(older_than_ms)

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
            data, feed = dict(self._data), self._feed.snapshot()
            self._depth = 1
            try:
                yield
            except BaseException:
                self._data = data
                self._feed.restore(feed)
                raise
            finally:
                self._depth = 0
            self._feed.compact()
