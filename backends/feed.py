"""The change feed held in memory, for the backends that keep their elements there
(``memory://`` and ``tinydb://``).

:class:`ChangeLog` keeps each id's latest change as ``(seq, id, deleted, ms)`` in a
dict whose order is seq order (a change moves its id to the end), plus a list of
``(seq, id)`` read with a binary search; entries a later change made stale are
skipped when read and dropped once they outnumber the live ones.

>>> log = ChangeLog()
>>> log.record("/a", False); log.record("/b", False); log.record("/a", True)
>>> log.changes(0, 10)
(3, [(2, '/b', False), (3, '/a', True)])
>>> log.changes(0, 1)
(2, [(2, '/b', False)])
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from damas_core.backends.base import Change, now_ms

#: One id's latest change: ``(seq, id, deleted, deletion time in ms or 0)``.
Entry = tuple[int, str, bool, int]


class ChangeLog:
    """The latest change of each id, numbered from 1 (see the module docstring)."""

    def __init__(self, entries: Iterable[Entry] = (), horizon: int = 0) -> None:
        self.entries: dict[str, Entry] = {}
        for entry in sorted(entries):
            self.entries[entry[1]] = entry
        self.horizon = horizon
        self.seq = max(max((e[0] for e in self.entries.values()), default=0), horizon)
        self._log: list[tuple[int, str]] = [(e[0], e[1]) for e in self.entries.values()]
        # While a transaction runs: each touched id's entry before it (None: absent).
        self._undo: dict[str, Entry | None] | None = None

    def record(self, id: str, deleted: bool) -> None:
        """``id`` changed (``deleted``: it was removed): its entry moves to the next seq."""
        self.seq += 1
        old = self.entries.pop(id, None)
        if self._undo is not None and id not in self._undo:
            self._undo[id] = old
        self.entries[id] = (self.seq, id, deleted, now_ms() if deleted else 0)
        self._log.append((self.seq, id))

    def changes(self, since: int, limit: int) -> tuple[int, list[Change]]:
        """As :meth:`damas_core.backends.base.Storage.changes` states."""
        out: list[Change] = []
        entries, log = self.entries, self._log
        for k in range(bisect.bisect_left(log, (since + 1,)), len(log)):
            seq, id = log[k]
            entry = entries.get(id)
            if entry is None or entry[0] != seq:
                continue  # superseded by a later change, or a dropped tombstone
            if len(out) == limit:
                return out[-1][0], out
            out.append((seq, id, entry[2]))
        return self.seq, out

    def drop_tombstones(self, older_than_ms: int) -> int:
        """Remove tombstones deleted before ``older_than_ms``; raise the horizon."""
        old = [e for e in self.entries.values() if e[2] and e[3] < older_than_ms]
        for seq, id, _, _ in old:
            entry = self.entries.pop(id)
            if self._undo is not None and id not in self._undo:
                self._undo[id] = entry
            self.horizon = max(self.horizon, seq)
        return len(old)

    def snapshot(self) -> tuple[int, int, int]:
        """Start keeping what :meth:`restore` needs to undo every change made after
        this call (the entries touched, not a copy of them all); :meth:`compact`
        ends it."""
        self._undo = {}
        return len(self._log), self.seq, self.horizon

    def restore(self, snapshot: tuple[int, int, int]) -> None:
        size, self.seq, self.horizon = snapshot
        entries, undo = self.entries, self._undo or {}
        for id, prior in undo.items():
            entries.pop(id, None)
            if prior is not None:
                entries[id] = prior
        if undo:  # put back in seq order: the priors came before every later entry
            self.entries = dict(sorted(entries.items(), key=lambda item: item[1][0]))
        del self._log[size:]
        self._undo = None

    def compact(self) -> None:
        """Drop stale log entries once they outnumber the live ones (amortized O(1));
        ends what :meth:`snapshot` started."""
        self._undo = None
        if len(self._log) > 2 * len(self.entries) + 1024:
            self._log = [(e[0], e[1]) for e in self.entries.values()]


__all__ = ["ChangeLog", "Entry"]
