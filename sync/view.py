"""An agent's view of the tracker, kept current through the change feed.

A :class:`TrackerView` holds what an agent reads: the file elements (what
:func:`.volumes.tracked_files` returns), the volumes and the global parameters.
:meth:`TrackerView.refresh` reads the change feed from where the last refresh stopped,
so a cycle in which nothing changed costs one request answered with nothing, whatever
the number of tracked files. The first refresh reads every element once (the feed
from its start, in pages), and so does a ``reset`` answer (the tracker was restored,
or its feed compacted past the view's position): the view then forgets what it held.

With a ``path`` the view is kept in an LMDB environment there (the agent's
``<state_dir>/view``), so that a restarted agent reads only what changed while it was
stopped. Without one it lives as long as the process.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.publish({"_id": "/a.txt", "origin": "paris", "comment": "new"})
>>> view = TrackerView(t)
>>> view.refresh().read, sorted(view.files)  # the file and its history child
(2, ['/a.txt'])
>>> view.refresh().read  # nothing changed: nothing read
0
>>> _ = t.update({"_id": "/a.txt", "sync_tokyo": True})
>>> view.refresh().read, view.files["/a.txt"]["sync_tokyo"]
(1, True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, KeysView, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .state import PREFIXES
from .tracker_api import TrackerAPI
from .volumes import DEFAULTS, GLOBAL_ID, _matches_volumes_query, _volumes_of

#: elements per feed request: the feed's largest page
PAGE = 10_000
_SEQ = b"\x00seq"  # the view's feed position, beside the elements (ids never start with NUL)
_GONE = b"\x01"  # before the id of an element deleted in the tracker (see TrackerView.gone)


def is_file(element: dict[str, Any]) -> bool:
    """True for a file element as :data:`.volumes.FILES_QUERY` finds it: an id starting
    with ``/``, an ``origin``, no ``#parent``.

    >>> is_file({"_id": "/a", "origin": "p"}), is_file({"_id": "/a", "#parent": "/b", "origin": "p"})
    (True, False)
    """
    return element["_id"][:1] == "/" and "origin" in element and "#parent" not in element


#: the keys of a file element the engine reads (beside ``_id`` and the per-site keys): a view keeps
#: only these, so that a million files fit in memory (comments, authors and a
#: studio's own keys are the tracker's business)
FILE_KEYS = frozenset(
    {
        "origin",
        "time",
        "file_size",
        "file_mtime",
        "file_count",
        "deleted",
        "deleted_at",
        "lock",
        "sync_priority",
        "syncEverywhere",
        "renamed_to",
    }
)


def trimmed(element: dict[str, Any]) -> dict[str, Any]:
    """The keys of a file element the engine reads: :data:`FILE_KEYS` and the per-site
    keys of :data:`.state.PREFIXES`.

    >>> trimmed({"_id": "/a", "origin": "p", "comment": "c", "synced_t": 5, "status": "wip"})
    {'_id': '/a', 'origin': 'p', 'synced_t': 5}
    """
    return {
        k: v for k, v in element.items() if k == "_id" or k in FILE_KEYS or k.startswith(PREFIXES)
    }


class PackedFiles(MutableMapping[str, dict[str, Any]]):
    """File elements by id, each held as the JSON of its :func:`trimmed` keys (without
    its ``_id``, the key already says it): reading one decodes it, so a caller always
    gets its own copy. A million files take about a third of the memory dicts would
    (measured in bench_agents: the agent's RSS); an idle cycle decodes none.

    >>> files = PackedFiles()
    >>> files["/a"] = {"_id": "/a", "origin": "p", "time": 5, "comment": "dropped"}
    >>> files["/a"], "/a" in files, len(files)
    ({'origin': 'p', 'time': 5, '_id': '/a'}, True, 1)
    """

    def __init__(self) -> None:
        self.packed: dict[str, bytes] = {}

    def __getitem__(self, file_id: str) -> dict[str, Any]:
        el = orjson.loads(self.packed[file_id])
        el["_id"] = file_id
        return el

    def get(self, file_id: str, default: Any = None) -> Any:  # one lookup, not two
        raw = self.packed.get(file_id)
        if raw is None:
            return default
        el = orjson.loads(raw)
        el["_id"] = file_id
        return el

    def __setitem__(self, file_id: str, element: dict[str, Any]) -> None:
        self.packed[file_id] = pack(element)

    def __delitem__(self, file_id: str) -> None:
        del self.packed[file_id]

    def __contains__(self, file_id: object) -> bool:
        return file_id in self.packed

    def __iter__(self) -> Iterator[str]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)

    def keys(self) -> KeysView[str]:
        return self.packed.keys()  # a real dict view: set operations in C


def pack(element: dict[str, Any]) -> bytes:
    """The JSON :class:`PackedFiles` holds for a file element."""
    raw = orjson.dumps(
        {k: v for k, v in element.items() if k in FILE_KEYS or k.startswith(PREFIXES)}
    )
    # a copy of exactly its size: orjson leaves its output buffer larger (about 4 kB
    # each, measured: 400 MB per 100 000 files)
    return bytes(memoryview(raw))


#: keys of a volume or of the global parameters a view never writes to disk: the
#: variables handed to rsync may hold what only admins may read
PRIVATE_KEYS = ("rsync_env",)


def on_disk(element: dict[str, Any]) -> dict[str, Any]:
    """A volume or the global parameters as a view keeps them on disk: without
    :data:`PRIVATE_KEYS` (a restarted view reads those elements again).

    >>> on_disk({"_id": "v", "name": "paris", "rsync_env": "TZ=UTC"})
    {'_id': 'v', 'name': 'paris'}
    """
    return {k: v for k, v in element.items() if k not in PRIVATE_KEYS}


def kept(element: dict[str, Any]) -> bool:
    """True when a view keeps ``element``: a file, a volume or the global parameters."""
    i = element["_id"]
    if i[:1] == "/":
        return "origin" in element and "#parent" not in element
    return i == GLOBAL_ID or _matches_volumes_query(element)


@dataclass
class Refresh:
    """What one :meth:`TrackerView.refresh` did: ``read`` elements and tombstones read,
    ``requests`` made, ``full`` when it read everything (first refresh or reset), and
    ``ids`` the ids of the view that changed."""

    read: int = 0
    requests: int = 0
    full: bool = False
    ids: set[str] = field(default_factory=set)
    # file ids deleted in the tracker that the view did not hold (written and deleted
    # between two refreshes): the agent knows their last version from its scan
    unheld: set[str] = field(default_factory=set)


class TrackerView:
    """The file elements, volumes and global parameters of ``tracker``, by id.

    ``files`` maps file ids to elements, trimmed to the keys the engine reads
    (:func:`trimmed`); ``volumes`` and ``parameters`` give the others. Elements the agent writes are put in with :meth:`put` (the tracker's
    answer), so that the rest of the cycle sees them; the feed brings them again
    later, which changes nothing.

    ``gone`` maps the ids of file elements deleted in the tracker (``damas delete``,
    ``damas untrack``) while the view held them to the element as it last was: the
    scanner does not publish such a file again while its copy is that version
    (docs/sync.md, "Untracked files"). An id leaves ``gone`` when it is tracked again.
    """

    def __init__(self, tracker: TrackerAPI, path: str | None = None) -> None:
        self.tracker = tracker
        self.files = PackedFiles()
        self.deleted: set[str] = set()  # ids of the file elements recorded deleted
        self._touched: set[str] = set()  # file ids set or removed since take_touched()
        self.gone: dict[str, dict[str, Any]] = {}
        self._others: dict[str, dict[str, Any]] = {}  # volumes and the global parameters
        self.last_seq: int | None = None
        self._env: Any = None
        self._dirty: dict[str, bytes | None] = {}  # what _save writes (None: deleted)
        # volumes and parameters read from disk lack their private keys: read again
        self._reread = False
        if path is not None:
            self._open(path)

    # -- what the view holds ------------------------------------------------------------

    def volumes(self) -> list[dict[str, Any]]:
        """The volume elements, sorted by name (as :func:`.volumes.volumes`)."""
        return _volumes_of(v for i, v in self._others.items() if i != GLOBAL_ID)

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        return self._others.get(volume_id) if volume_id != GLOBAL_ID else None

    def parameters(self) -> dict[str, Any]:
        """The global parameters merged over :data:`.volumes.DEFAULTS` (as
        :func:`.volumes.global_parameters`)."""
        element = self._others.get(GLOBAL_ID) or {}
        return {**DEFAULTS, **{k: v for k, v in element.items() if v is not None}}

    def take_touched(self) -> set[str]:
        """The file ids set or removed (by :meth:`refresh` or :meth:`put`) since the last
        call; a full read touches every id it reads."""
        touched, self._touched = self._touched, set()
        return touched

    def put_gone(self, file_id: str) -> None:
        """Take in a file element the agent deleted (its tombstone comes later)."""
        if file_id in self.files:
            self._set(file_id, None)

    def put(self, elements: Iterable[dict[str, Any] | None]) -> None:
        """Take in elements the tracker returned for a write (``None`` entries skipped)."""
        for el in elements:
            if el is not None:
                self._set(el["_id"], el)

    # -- keeping it current -------------------------------------------------------------

    def refresh(self) -> Refresh:
        """Read what changed in the tracker since the last refresh (everything the first
        time, or after a ``reset`` answer); returns what was read."""
        done = Refresh()
        since = self.last_seq
        if since is None:
            done.full = True
            self._clear()
            since = 0
        elif self._reread:
            self._read_others(done)
        self._reread = False
        while True:
            page = self.tracker.changes(since, PAGE, elements=True)
            done.requests += 1
            if page.get("reset"):
                # the feed cannot say what changed since our position: read it all again
                done.full = True
                self._clear()
                if since == 0:  # the feed's start is gone (compacted): read every element
                    self._read_all(done)
                    since = page["last_seq"]
                    break
                since = 0
                continue
            for change in page["changes"]:
                done.read += 1
                i = change["_id"]
                el = change.get("element")
                if change["deleted"] or el is None or not kept(el):
                    before = self._get(i)
                    if before is not None:
                        self._set(i, None)
                        done.ids.add(i)
                        if change["deleted"] and i[:1] == "/":
                            self._untracked(i, before)
                    elif change["deleted"] and i[:1] == "/":
                        done.unheld.add(i)
                else:
                    self._set(i, el)
                    done.ids.add(i)
            advanced = page["last_seq"] != since
            since = page["last_seq"]
            # A page may hold fewer entries than asked while the feed goes on (internal
            # ids and elements deleted meanwhile are left out). A first read goes on
            # until the feed stops; later, a short page ends the refresh (what is left
            # comes with the next one), so that an idle cycle costs one request.
            if not advanced or (len(page["changes"]) < PAGE and not done.full):
                break
        self.last_seq = since
        self._save()
        return done

    def _read_all(self, done: Refresh) -> None:
        from .volumes import tracker_view

        files, vols = tracker_view(self.tracker)
        done.requests += 1
        params = self.tracker.read(GLOBAL_ID)
        done.requests += 1
        for el in [*files.values(), *vols, *([params] if params else [])]:
            done.read += 1
            self._set(el["_id"], el)
            done.ids.add(el["_id"])

    def _read_others(self, done: Refresh) -> None:
        """Read the volumes and the global parameters again (a view opened from disk
        holds them without their private keys)."""
        from .volumes import volumes

        params = self.tracker.read(GLOBAL_ID)
        for el in [*volumes(self.tracker), *([params] if params else [])]:
            self._others[el["_id"]] = el
        done.requests += 2

    def untrack(self, file_id: str, last: dict[str, Any]) -> None:
        """Remember ``file_id`` as untracked, its last version ``last`` (``file_size``,
        ``file_mtime``), for a deletion the view saw without holding the element."""
        self._untracked(file_id, {"_id": file_id, **last})

    def _untracked(self, i: str, el: dict[str, Any] | None) -> None:
        if el is None:
            if self.gone.pop(i, None) is not None and self._env is not None:
                self._dirty[_GONE.decode() + i] = None
            return
        last = {k: el[k] for k in ("_id", "file_size", "file_mtime", "origin") if k in el}
        self.gone[i] = last
        if self._env is not None:
            self._dirty[_GONE.decode() + i] = orjson.dumps(last)

    def _get(self, i: str) -> dict[str, Any] | None:
        return self.files.get(i) if i[:1] == "/" else self._others.get(i)

    def _set(self, i: str, el: dict[str, Any] | None) -> None:
        if i[:1] != "/":
            if el is None:
                self._others.pop(i, None)
            else:
                self._others[i] = el
            if self._env is not None:
                self._dirty[i] = None if el is None else orjson.dumps(on_disk(el))
            return
        self._touched.add(i)
        packed = self.files.packed
        if el is None:
            packed.pop(i, None)
            self.deleted.discard(i)
            raw = None
        else:
            raw = packed[i] = pack(el)
            if el.get("deleted") is True:
                self.deleted.add(i)
            else:
                self.deleted.discard(i)
            if i in self.gone:
                self._untracked(i, None)
        if self._env is not None:
            self._dirty[i] = raw

    def _clear(self) -> None:
        if self._env is not None:
            for i in [*self.files, *self._others]:
                self._dirty[i] = None
        self._touched.update(self.files.packed)
        self.files.packed.clear()
        self.deleted.clear()
        self._others.clear()

    # -- on disk ------------------------------------------------------------------------

    def _open(self, path: str) -> None:
        import lmdb

        os.makedirs(path, mode=0o700, exist_ok=True)
        # a view is a cache: losing its last transactions in a crash only means reading
        # them again from the feed, so commits are not synced to disk one by one
        self._env = lmdb.open(path, map_size=1 << 36, sync=False, metasync=False, mode=0o600)
        with self._env.begin() as txn:
            seq = txn.get(_SEQ)
            packed = self.files.packed
            for key, value in txn.cursor():
                if key == _SEQ:
                    continue
                if key[:1] == b"/":  # kept as it is held: packed
                    file_id = key.decode()
                    packed[file_id] = value
                    if b'"deleted":true' in value:
                        self.deleted.add(file_id)
                    continue
                el = orjson.loads(value)
                if key[:1] == _GONE:
                    self.gone[el["_id"]] = el
                else:
                    self._others[el["_id"]] = el
                    self._reread = True
        self.last_seq = int(seq) if seq is not None else None

    def _save(self) -> None:
        """Write what changed since the last save, with the feed position, in one
        transaction (the position never runs ahead of the elements)."""
        if self._env is None:
            return
        dirty, self._dirty = self._dirty, {}
        with self._env.begin(write=True) as txn:
            for i, raw in dirty.items():
                key = i.encode()
                if raw is None:
                    txn.delete(key)
                else:
                    txn.put(key, raw)
            if self.last_seq is None:
                txn.delete(_SEQ)
            else:
                txn.put(_SEQ, str(self.last_seq).encode())

    def close(self) -> None:
        """Save what is pending and close the environment (a view in memory: nothing)."""
        if self._env is not None:
            self._save()
            self._env.close()
            self._env = None


__all__ = [
    "FILE_KEYS",
    "PAGE",
    "PRIVATE_KEYS",
    "PackedFiles",
    "Refresh",
    "TrackerView",
    "is_file",
    "kept",
    "on_disk",
    "pack",
    "trimmed",
]
