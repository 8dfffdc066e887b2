"""The LMDB environments open in this process, and what they share between threads.

LMDB allows one open environment per directory and process: :func:`acquire` hands
every store object on a directory the same :class:`Env`, counted, and :func:`release`
closes it with the last one. An environment inherited through ``fork()`` must not be
used (LMDB forbids it, and py-lmdb will not open the same one again in the child):
every store of the parent refuses to work in the child, with a clear error. Map
resizes replace the memory mapping, so a :class:`Gate` lets them run alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lmdb
import orjson
from damas_core.backends.lmdb_keys import index_db_name

from damas_core.errors import StorageError

MAIN_DB = b"elements"
META_DB = b"meta"
META_INDEXES = b"indexes"
FEED_SEQ_DB = b"feed:seq"
FEED_ID_DB = b"feed:id"
#: Sub-databases besides the indexes: elements, meta and the feed's two.
FIXED_DBS = 4
# How long a map resize waits for this process's other transactions to end.
_RESIZE_WAIT_S = 60.0
_FORKED = (
    "an LMDB store cannot be used across fork(): open it in a child process "
    "that did not inherit it (start it with the 'spawn' method)"
)


class Gate:
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
            raise StorageError(_FORKED)
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


class Local(threading.local):
    """Per-thread state: the thread's open write transaction, if any (a class default,
    so that looking it up never raises and catches AttributeError: reads do it)."""

    block: Any = None


class Env:
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
        self.gate = Gate()
        self.local = Local()
        self.lock = threading.RLock()
        self.refs = 0
        self.max_dbs = max_dbs

    def refresh_indexes(self, raw: bytes | None) -> list[str]:
        """Open the index sub-databases that the ``meta`` list ``raw`` names (whoever
        created them) and return every index name. Call with the gate entered and no
        transaction open."""
        with self.lock:
            names = orjson.loads(raw) if raw is not None else []
            dbs = dict(self.index_dbs)
            for name in names:
                if name not in dbs:
                    dbs[name] = self.env.open_db(index_db_name(name), dupsort=True)
            self.index_dbs = dbs
            self.meta_raw = raw
            return list(dbs)


_OPEN: dict[str, Env] = {}
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


def acquire(path: str, map_size: int, max_dbs: int, sync: bool) -> Env:
    os.makedirs(path, exist_ok=True)
    real = os.path.realpath(path)
    with _OPEN_LOCK:
        h = _OPEN.get(real)
        if h is not None and h.gate.forked:
            raise StorageError(_FORKED)
        if h is None:
            h = _OPEN[real] = Env(real, map_size, max_dbs, sync)
        h.refs += 1
        return h


def release(h: Env) -> None:
    """One store object less on ``h``; the last one closes the environment."""
    with _OPEN_LOCK:
        h.refs -= 1
        if h.refs <= 0:
            _OPEN.pop(h.path, None)
            h.env.close()


class _Closed:
    """What a closed store holds instead of its environment."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (copy, doctest, inspect) is not use
            raise AttributeError(name)
        raise StorageError("this LMDB store is closed")


CLOSED: Any = _Closed()


__all__ = ["CLOSED", "Env", "Gate", "acquire", "release"]
