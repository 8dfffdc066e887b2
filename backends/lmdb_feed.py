"""The LMDB backend's change feed: two sub-databases written in each write's own
transaction.

- ``feed:seq``: a seq (8 bytes, big-endian, so byte order is number order) → the id
  in UTF-8, followed for a tombstone by ``0xFF`` (never in UTF-8) and the deletion
  time in milliseconds (8 bytes);
- ``feed:id``: an element key → the seq of that id's one entry.

The next seq is read inside the write transaction (the last ``feed:seq`` key, or the
horizon if compaction dropped it), so writers in every process of an environment,
which LMDB serializes, number in commit order; nothing else holds a counter. Seqs of
new elements only grow, so bulk inserts append them (``MDB_APPEND``). The horizon is
the ``meta`` key ``horizon``. A store made before the feed existed numbers its
elements once, in key order, when first opened.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import orjson
from damas_core.backends.base import Change, now_ms
from damas_core.backends.lmdb_env import Env
from damas_core.backends.lmdb_keys import element_key

META_HORIZON = b"horizon"
SEQ = struct.Struct(">Q")
_DEAD = b"\xff"


class FeedWriter:
    """The feed entries of one write step (see the module docstring)."""

    __slots__ = ("by_id", "by_seq", "seq")

    def __init__(self, txn: Any, h: Env) -> None:
        self.by_seq = txn.cursor(db=h.by_seq)
        self.by_id = txn.cursor(db=h.by_id)
        last = SEQ.unpack(self.by_seq.key())[0] if self.by_seq.last() else 0
        self.seq = max(last, horizon(txn, h)[0])

    def record(self, key: bytes, id: str, deleted: bool) -> None:
        """The element under ``key`` (its ``_id`` is ``id``) changed: its entry moves
        to the next seq."""
        self.seq += 1
        seq_key = SEQ.pack(self.seq)
        old = self.by_id.replace(key, seq_key)
        if old is not None and self.by_seq.set_key(old):
            self.by_seq.delete()
        entry = id.encode("utf-8", "surrogatepass")
        if deleted:
            entry += _DEAD + SEQ.pack(now_ms())
        self.by_seq.put(seq_key, entry, append=True)

    def record_new(self, keys: list[bytes], append: bool) -> None:
        """Entries for elements just stored under ``keys`` (their UTF-8 ids), in bulk;
        ``append`` when the keys are sorted (and after every element key)."""
        by_id = self.by_id
        append = append and (not by_id.last() or keys[0] > by_id.key())  # tombstones
        first = self.seq + 1
        self.seq += len(keys)
        seq_keys = list(map(SEQ.pack, range(first, self.seq + 1)))
        _, added = by_id.putmulti(zip(keys, seq_keys), overwrite=False, append=append)
        if added != len(keys):  # some ids left a tombstone: replace it
            for key, seq_key in zip(keys, seq_keys):
                old = by_id.replace(key, seq_key)
                if old is not None and old != seq_key and self.by_seq.set_key(old):
                    self.by_seq.delete()
        self.by_seq.putmulti(zip(seq_keys, keys), append=True)


def horizon(txn: Any, h: Env) -> tuple[int, int]:
    """Step: the highest seq compaction dropped (0 if none)."""
    raw = txn.get(META_HORIZON, db=h.meta)
    value = SEQ.unpack(raw)[0] if raw is not None else 0
    return value, value


def last_seq(txn: Any, h: Env) -> tuple[int, int]:
    """Step: the last seq given, the last ``feed:seq`` key or the horizon if higher."""
    cursor = txn.cursor(db=h.by_seq)
    last = SEQ.unpack(cursor.key())[0] if cursor.last() else 0
    value = max(last, horizon(txn, h)[0])
    return value, value


def changes(txn: Any, h: Env, since: int, limit: int) -> tuple[tuple[int, list[Change]], int]:
    """Step: :meth:`~damas_core.backends.base.Storage.changes`."""
    cursor = txn.cursor(db=h.by_seq)
    out: list[Change] = []
    if cursor.set_range(SEQ.pack(since + 1)):
        unpack = SEQ.unpack
        for key, value in cursor:
            if len(out) == limit:
                return (out[-1][0], out), out[-1][0]
            dead = value[-9:-8] == _DEAD
            id = (value[:-9] if dead else value).decode("utf-8", "surrogatepass")
            out.append((unpack(key)[0], id, dead))
    last = last_seq(txn, h)[0]
    return (last, out), zlib.crc32(b"%d %d" % (last, len(out)))


def drop_tombstones(txn: Any, h: Env, older_than_ms: int) -> tuple[int, int]:
    """Step: remove the tombstones deleted before ``older_than_ms``, raise the horizon
    (a scan of the feed: compaction is rare)."""
    cursor = txn.cursor(db=h.by_seq)
    dropped, top = 0, horizon(txn, h)[0]
    ok = cursor.first()
    while ok:
        value = cursor.value()
        if value[-9:-8] == _DEAD and SEQ.unpack(value[-8:])[0] < older_than_ms:
            top = max(top, SEQ.unpack(cursor.key())[0])
            txn.delete(element_key(value[:-9].decode("utf-8", "surrogatepass")), db=h.by_id)
            ok = cursor.delete()  # moves to the next entry
            dropped += 1
        else:
            ok = cursor.next()
    if dropped:
        txn.put(META_HORIZON, SEQ.pack(top), db=h.meta)
    return dropped, dropped


def number_all(txn: Any, h: Env) -> tuple[int, int]:
    """Step: give every element a seq, in key order, when the feed is empty (a store
    made before the feed existed)."""
    if txn.cursor(db=h.by_seq).first():
        return 0, 0
    feed = FeedWriter(txn, h)
    count = 0
    for key, raw in txn.cursor(db=h.main).iternext():
        key = bytes(key)
        id = orjson.loads(raw)["_id"] if b"\xff" in key else key.decode("utf-8", "surrogatepass")
        feed.record(key, id, False)
        count += 1
    return count, count


__all__ = ["FeedWriter", "changes", "drop_tombstones", "horizon", "last_seq"]
