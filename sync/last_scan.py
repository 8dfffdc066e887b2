"""What an agent's last scan saw of each file: its look and its inode, for renames.

A scan recognises a rename by comparing a file that went away with one that appeared
(:meth:`.scanner._Comparison._renames`): the new one must have the look (size, mtime to
the nanosecond) and the :data:`.tree.Inode` (device, inode number) the last scan saw
of the old one. :class:`LastScan` keeps those of every file after each scan
(:meth:`LastScan.keep`) and gives those of a few files back (:meth:`LastScan.get`).

With a ``path`` (the agent's ``<state_dir>/scan``) they are also kept in an LMDB
environment there, so that the first scan of a restarted agent compares with the last
scan before it stopped, as a later scan does with the one before it. Each scan's
entries are written in one transaction once its writes to the tracker are done: a
crash before it leaves the scan before, whose entries still describe files that were
there. An entry is only ever used when the file now found has that very look and
inode, so an entry older than the tree (a crash, the store copied from elsewhere)
can make no rename of files that were not the same file. Deleting the directory
costs the renames made while the agent was stopped, nothing else.

>>> last = LastScan()
>>> last.keep({"/a.txt": (5, 1_567_529_676_123_456_789)}, {"/a.txt": (2049, 12)})
>>> last.get(["/a.txt", "/b.txt"])
{'/a.txt': ((5, 1567529676123456789), (2049, 12))}
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import Any

from damas_core.backends.lmdb_keys import element_keys

from .tree import Inode, Look

# an entry's value: size, mtime (ns), device, inode number
_ENTRY = struct.Struct("<qqQQ")


class LastScan:
    """The looks and inodes of the last scan, in memory, and in LMDB at ``path`` when
    given (see the module). One agent per ``path``; :meth:`close` it when done."""

    def __init__(self, path: str | None = None) -> None:
        # the last scan's dicts as kept (None: nothing kept since the start)
        self.looks: dict[str, Look] | None = None
        self.inodes: dict[str, Inode] | None = None
        self._env: Any = None
        self._db: Any = None
        if path is not None:
            import lmdb

            os.makedirs(path, mode=0o700, exist_ok=True)
            # not synced at each commit: a system crash may lose the last scans'
            # entries, which only costs the renames they would have told
            self._env = lmdb.open(path, map_size=1 << 36, sync=False, metasync=False, mode=0o600)
            self._db = self._env.open_db()  # the main database: the entries by file id

    def get(self, ids: Iterable[str]) -> dict[str, tuple[Look, Inode]]:
        """The look and inode the last scan saw of each of ``ids`` it saw, by id: from
        memory, or, before this process's first :meth:`keep`, from the store."""
        looks, inodes = self.looks, self.inodes
        if looks is not None and inodes is not None:
            return {i: (looks[i], inodes[i]) for i in ids if i in looks and i in inodes}
        if self._env is None:
            return {}
        ids = list(ids)
        out = {}
        with self._env.begin() as txn:
            for file_id, key in zip(ids, element_keys(ids)):
                raw = txn.get(key)
                if raw is not None:
                    size, mtime, device, inode = _ENTRY.unpack(raw)
                    out[file_id] = ((size, mtime), (device, inode))
        return out

    def keep(self, looks: dict[str, Look], inodes: dict[str, Inode]) -> None:
        """Keep what a scan saw: ``looks`` (the whole tree) and ``inodes`` (those of its
        files; a file without one is left out). The store gets what changed since the
        last :meth:`keep` (everything at the first one) in one transaction. The dicts are
        kept as they are: the caller does not change them afterwards."""
        if self._env is not None:
            with self._env.begin(write=True) as txn:
                if self.looks is None or self.inodes is None:
                    txn.drop(self._db, delete=False)  # a store from before this process
                    _put(txn, looks, inodes, list(looks), append=True)
                elif looks != self.looks or inodes != self.inodes:
                    changed = {i for i, _ in looks.items() - self.looks.items()}
                    changed.update(i for i, _ in inodes.items() - self.inodes.items())
                    gone = list(self.looks.keys() - looks.keys())
                    gone += [i for i in changed if i not in inodes]
                    for key in element_keys(gone):
                        txn.delete(key)
                    _put(txn, looks, inodes, list(changed), append=False)
        self.looks, self.inodes = looks, inodes

    def close(self) -> None:
        """Close the store (in memory: nothing to do)."""
        if self._env is not None:
            self._env.close()
            self._env = None


def _put(
    txn: Any, looks: dict[str, Look], inodes: dict[str, Inode], ids: list[str], *, append: bool
) -> None:
    """Write the entries of ``ids`` (those with an inode); ``append``: into an empty
    database, in key order (LMDB's fast path)."""
    ids = [i for i in ids if i in inodes]
    pack = _ENTRY.pack
    items = [
        (key, pack(*looks[i], *inodes[i])) for i, key in zip(ids, element_keys(ids), strict=True)
    ]
    if append:
        items.sort()
    txn.cursor().putmulti(items, append=append)


__all__ = ["LastScan"]
