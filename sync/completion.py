"""Completion per site and per folder, kept current through the change feed.

:func:`.status.completion` and :func:`.status.folders` read every file they count; on
a large store that is seconds per page. A :class:`CompletionCache` reads the store
once, keeps per file only what the counts need (its size, whether it is deleted, its
state at each site) and the counts themselves, and then applies each change of the
feed to them: a page after N changes reads N elements. It gives what
:func:`.status.completion` gives over every file, and what :func:`.status.folders`
gives for the query ``*``.

It reads the store again when the feed says to (``reset``) and when the site names
or the global parameters change (the states depend on them). It counts what the
tracker it is given may read: the dashboard gives it its own tracker (every class
sees every file and the keys counted).

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create([{"_id": "v1", "name": "paris", "url": "file:///p/"},
...               {"_id": "v2", "name": "tokyo", "url": "file:///t/"}])
>>> _ = t.publish({"_id": "/s/a/x", "origin": "paris", "comment": "c", "file_size": 3,
...                "sync_tokyo": True})
>>> cache = CompletionCache(t)
>>> cache.completion()["tokyo"]["files_wanted"], cache.completion()["tokyo"]["files_ok"]
(1, 0)
>>> _ = t.update({"_id": "/s/a/x", "synced_tokyo": t.read("/s/a/x")["time"]})
>>> cache.completion()["tokyo"]["files_ok"], [f["path"] for f in cache.folders("/")["folders"]]
(1, ['/s/'])
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from sortedcontainers import SortedList

from .state import writer_of
from .status import SitesCache, _empty_counts, _is_file, folder_prefix, state_of

#: per file: (size counted, deleted, its state at each site in the sites' order)
_Record = tuple[int, bool, tuple[str, ...]]


def _parent(path: str) -> str:
    """The folder directly holding ``path`` (a file, or a folder ending with ``/``)."""
    return path[: path.rfind("/", 0, len(path) - 1) + 1]


def _copied(completion: dict[str, Any]) -> dict[str, Any]:
    """A copy of per-site counts (numbers, and dicts of numbers), for a caller to keep:
    a third of the cost of ``copy.deepcopy`` (a /metrics scrape, make bench ops)."""
    return {
        site: {k: dict(v) if isinstance(v, dict) else v for k, v in counts.items()}
        for site, counts in completion.items()
    }


class _Counts:
    """What a folder (or the whole store) counts: files and bytes not deleted, every
    file including deleted ones (``members``: the folder is listed while it has one),
    and the completion per site."""

    __slots__ = ("bytes", "completion", "files", "members")

    def __init__(self, names: list[str]) -> None:
        self.members = 0
        self.files = 0
        self.bytes = 0
        self.completion = {s: _empty_counts() for s in names}

    def add(
        self, deleted: bool, states: tuple[str, ...], n: int, size: int, names: list[str]
    ) -> None:
        """Count ``n`` files (``-n``: forget them) of ``size`` bytes in all, all deleted or
        not, in the same ``states`` at the sites ``names``."""
        self.members += n
        if deleted:
            return  # deleted files count nowhere (status.completion)
        self.files += n
        self.bytes += size
        for site, st in zip(names, states):
            counts = self.completion[site]
            counts["states"][st] += n
            counts["state_bytes"][st] += size
            if st == "unwanted":
                continue
            counts["files_wanted"] += n
            counts["bytes_wanted"] += size
            if st == "ok":
                counts["files_ok"] += n
                counts["bytes_ok"] += size


class CompletionCache:
    """Completion per site and per folder of a tracker's files, brought up to date
    from the change feed at each call (thread-safe). ``sites``: the
    :class:`.status.SitesCache` giving the site names and global parameters (one is
    made when not given); ``batch``: how many changes are read at a time."""

    def __init__(self, tracker: Any, sites: SitesCache | None = None, *, batch: int = 1000) -> None:
        self.tracker = tracker
        self.sites = sites if sites is not None else SitesCache(tracker)
        self.batch = batch
        self._lock = threading.Lock()
        self._seq: int | None = None
        self._basis: tuple[list[str], dict[str, Any]] = ([], {})
        self._files: dict[str, _Record] = {}
        self._total = _Counts([])
        self._folders: dict[str, _Counts] = {}
        self._children: dict[str, set[str]] = {}
        self._direct: dict[str, int] = {}
        # the ids in order, of every file and of the files in each state at each site: a
        # state filter's page is found by bisection, whatever the number of files
        self._order: SortedList = SortedList()
        self._in_state: dict[tuple[str, str], SortedList] = {}

    # -- what callers read ---------------------------------------------------------------

    def completion(self) -> dict[str, Any]:
        """Per site: ``files_ok``/``files_wanted``, ``bytes_ok``/``bytes_wanted`` and the
        number of files in each state, as :func:`.status.completion` gives them over
        every file."""
        with self._lock:
            self._catch_up()
            return _copied(self._total.completion)

    def folders(self, prefix: str = "/") -> dict[str, Any]:
        """The folders and files directly under ``prefix``, as :func:`.status.folders`
        gives them for the query ``*``."""
        prefix = folder_prefix(prefix)
        with self._lock:
            self._catch_up()
            listed = []
            for path in sorted(self._children.get(prefix, ())):
                counts = self._folders[path]
                listed.append(
                    {
                        "path": path,
                        "files": counts.files,
                        "bytes": counts.bytes,
                        "completion": _copied(counts.completion),
                    }
                )
            return {
                "prefix": prefix,
                "sites": list(self._basis[0]),
                "folders": listed,
                "files": self._direct.get(prefix, 0),
            }

    def in_states(
        self, prefix: str, states: Iterable[str], sites: Iterable[str], skip: int, limit: int
    ) -> tuple[list[str], int | None]:
        """The page of a state filter, as :func:`.status.page` gives it for the query
        ``*`` in ``_id`` order: the ids of the files under ``prefix`` in one of
        ``states`` at one of ``sites``, from position ``skip`` of the files under
        ``prefix`` (the unfiltered stream's position, as the state filter pages), at
        most ``limit`` of them, and the position of the next match (``None`` if none).
        Its cost follows ``limit`` and the logarithm of the number of files, not the
        number of files in those states."""
        with self._lock:
            self._catch_up()
            order = self._order
            base = order.bisect_left(prefix)
            # the files from position skip on are those from the id at that position on
            if base + skip >= len(order) or not order[base + skip].startswith(prefix):
                return [], None
            first = order[base + skip]
            groups = [
                self._in_state[key].irange(minimum=first)
                for key in ((site, st) for site in sites for st in states)
                if key in self._in_state
            ]
            picked: list[str] = []
            for i in heapq.merge(*groups):  # an id in several groups comes once per group
                if not i.startswith(prefix):
                    break  # the ids under prefix are together: none after this one
                if not picked or picked[-1] != i:
                    picked.append(i)
                    if len(picked) > limit:
                        return picked[:limit], order.bisect_left(picked[limit]) - base
            return picked, None

    # -- keeping current -----------------------------------------------------------------

    def _catch_up(self) -> None:
        vols, params = self.sites.get()
        names = [v["name"] for v in vols]
        if self._seq is None or (names, params) != self._basis:
            self._rebuild(names, dict(params))
            return
        target = self.tracker.storage.last_seq()
        while self._seq < target:
            got = self.tracker.changes(self._seq, self.batch, elements=True)
            if got.get("reset"):
                self._rebuild(names, dict(params))
                return
            for change in got["changes"]:
                self._forget(change["_id"])
                element = change.get("element")
                if not change["deleted"] and _is_file(element):
                    self._keep(element)
            if got["last_seq"] <= self._seq:
                break  # no progress: the feed has nothing more for now
            self._seq = got["last_seq"]

    def _rebuild(self, names: list[str], params: dict[str, Any]) -> None:
        """Count every file again (the one full read); a read that fails leaves the
        cache to read everything again at the next call, not half counted."""
        seq = self.tracker.storage.last_seq()  # before reading: nothing missed
        self._seq = None
        self._basis = (names, params)
        self._files = {}
        self._total = _Counts(names)
        self._folders, self._children, self._direct = {}, {}, {}
        # the files of a folder in the same states are counted together, once: adding
        # each file to its folders' counts was a third of this read (make bench, dashboard)
        together: dict[tuple[str, bool, tuple[str, ...]], list[int]] = {}
        for element in self.tracker.storage.scan():
            if not _is_file(element):
                continue
            id = element["_id"]
            record = self._files[id] = self._record(element)
            if id.endswith("/"):
                self._count(id, record, 1)  # a folder package: rare, and counted twice
                continue
            size, deleted, states = record
            files = together.setdefault((_parent(id), deleted, states), [0, 0])
            files[0] += 1
            files[1] += size
        for (parent, deleted, states), (n, size) in together.items():
            self._count_in(parent, deleted, states, n, size)
        # indexed once at the end: sorting lists costs less than adding ids one by one
        self._order = SortedList(self._files)
        in_state: dict[tuple[str, str], list[str]] = {}
        for id, (_, _, states) in self._files.items():
            for site, st in zip(names, states):
                in_state.setdefault((site, st), []).append(id)
        self._in_state = {key: SortedList(ids) for key, ids in in_state.items()}
        self._seq = seq

    def _record(self, element: Mapping[str, Any]) -> _Record:
        names, params = self._basis
        writer = writer_of(element)
        size = element.get("file_size")
        return (
            size if isinstance(size, int) else 0,
            bool(element.get("deleted")),
            tuple(state_of(element, s, params, writer)["state"] for s in names),
        )

    def _keep(self, element: Mapping[str, Any]) -> None:
        """Count a changed file, and add it to the ids in order and to its states' ids."""
        id = element["_id"]
        record = self._files[id] = self._record(element)
        self._count(id, record, 1)
        self._order.add(id)
        for site, st in zip(self._basis[0], record[2]):
            self._in_state.setdefault((site, st), SortedList()).add(id)

    def _forget(self, id: str) -> None:
        record = self._files.pop(id, None)
        if record is None:
            return
        self._count(id, record, -1)
        self._order.discard(id)
        for site, st in zip(self._basis[0], record[2]):
            self._in_state[site, st].discard(id)

    def _count(self, id: str, record: _Record, sign: int) -> None:
        """Count a file (``sign`` 1) or forget it (-1)."""
        size, deleted, states = record
        self._count_in(_parent(id), deleted, states, sign, sign * size)
        if id.endswith("/"):  # a folder package is a file of its folder and of itself
            self._count_direct(id, sign)

    def _count_direct(self, folder: str, n: int) -> None:
        left = self._direct.get(folder, 0) + n
        if left:
            self._direct[folder] = left
        else:
            self._direct.pop(folder, None)

    def _count_in(
        self, parent: str, deleted: bool, states: tuple[str, ...], n: int, size: int
    ) -> None:
        """Count ``n`` files directly in ``parent`` (see :meth:`_Counts.add`) there, in
        every folder above it and in the total."""
        names = self._basis[0]
        self._total.add(deleted, states, n, size, names)
        self._count_direct(parent, n)
        folder = parent
        while folder != "/":
            counts = self._folders.get(folder)
            if counts is None:
                counts = self._folders[folder] = _Counts(names)
                self._children.setdefault(_parent(folder), set()).add(folder)
            counts.add(deleted, states, n, size, names)
            if not counts.members:
                del self._folders[folder]
                siblings = self._children[_parent(folder)]
                siblings.discard(folder)
                if not siblings:
                    del self._children[_parent(folder)]
            folder = _parent(folder)


__all__ = ["CompletionCache"]
