"""The tracker side of a scan: compare a volume's tree with the file elements.

:class:`Scanner` walks the tree (:func:`.tree.walk_parts`), compares it with what the
tracker knows, part by part as the walk goes, and returns the writes to make
(:class:`ScanChanges`). It writes
nothing itself, so a rescan of an unchanged tree gives empty changes. After a full
comparison (:meth:`Scanner.compare`), :meth:`Scanner.rescan` compares only the files
that may have changed since the previous scan.

>>> import tempfile, pathlib
>>> root = tempfile.mkdtemp()
>>> _ = pathlib.Path(root, "a.txt").write_text("hello")
>>> [e["file_size"] for e in Scanner("paris", root, settle=0).compare({}, {}).publish]
[5]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .last_scan import LastScan
from .site import LocalSite, Site
from .state import (
    changed_here,
    changed_since,
    conflict_record,
    deleted_here,
    holds_current,
    look_matches,
    mtime_ms,
    recorded_exactly,
    same_mtime,
    settled,
    site_keys,
    writer_of,
)
from .tree import (
    CONFLICT_MARK,
    Inode,
    Look,
    Rules,
    Seen,
    parent_of,
    same_look,
)

#: the volume keys a scan reads: when one of them changes, the next scan compares everything
SCAN_KEYS = (
    "includePatternRules",
    "excludePatternRules",
    "excludedFiles",
    "packagePatternRules",
    "enableDiscoveryPackages",
    "ignoreExistingFiles",
    "enableDiscoveryDeletedFiles",
    "enableDiscoveryUpdatedFiles",
)


def _scan_keys(volume: Mapping[str, Any]) -> dict[str, Any]:
    return {k: volume.get(k) for k in SCAN_KEYS}


@dataclass
class ScanChanges:
    """The writes one scan asks for; empty when the tree did not change.

    ``tree``, ``unsettled``, ``packages``, ``volume`` and ``full`` describe what the scan
    saw, for :meth:`Scanner.remember`.
    """

    publish: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # new or changed files not stable yet
    # package id -> the per-file elements inside it, tracked before it was a package:
    # folded into it (deleted, recorded on the package) once the package is written
    fold: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seen: int = 0
    tree: dict[str, Look] = field(default_factory=dict, repr=False)
    inodes: dict[str, Inode] = field(default_factory=dict, repr=False)  # the tree's, by id
    counts: dict[str, int] = field(default_factory=dict, repr=False)  # files in each package
    digest: bytes | None = None  # the listing's (:meth:`.find.Listing.wait_digest`)
    rules: Rules | None = None  # the rules the walk kept files with
    # the ``time`` of the version each new version or deletion of :attr:`update` was
    # made against: written only while the element still holds it (another site's
    # version written meanwhile makes it compared again, not overwritten)
    base: dict[str, int | None] = field(default_factory=dict, repr=False)
    unsettled: set[str] = field(default_factory=set, repr=False)  # compared again next scan
    packages: frozenset[str] = frozenset()  # the tracked packages the walk used
    volume: dict[str, Any] = field(default_factory=dict, repr=False)  # its SCAN_KEYS
    full: bool = True  # every tracked file was compared (False: only what may have changed)

    def __bool__(self) -> bool:
        return bool(self.publish or self.update)


def history_of(patch: Mapping[str, Any], site: str) -> dict[str, Any] | None:
    """The history child a scan's update ``patch`` adds to its file once written: a new
    version (``modified at <site>``, its size and mtime) or a deletion (``deleted at
    <site>``); ``None`` for the other updates (a baseline, a conflict, an error cleared).
    The tracker stamps its ``author`` and ``time``.

    >>> history_of({"_id": "/a", "file_size": 3, "file_mtime": 9, "modified_paris": 5}, "paris")
    {'#parent': '/a', 'comment': 'modified at paris', 'file_size': 3, 'file_mtime': 9}
    >>> history_of({"_id": "/a", "synced_paris": 5}, "paris") is None
    True
    """
    if patch.get("deleted") is True:
        if patch.get("renamed_to"):
            return {
                "#parent": patch["_id"],
                "comment": f"renamed to {patch['renamed_to']} at {site}",
            }
        return {"#parent": patch["_id"], "comment": f"deleted at {site}"}
    if site_keys(site).modified in patch:
        child = {"#parent": patch["_id"], "comment": f"modified at {site}"}
        for key in ("file_size", "file_mtime", "file_count"):
            if key in patch:
                child[key] = patch[key]
        return child
    return None


@dataclass
class ScanState:
    """What the last scan saw, so that the next one compares only what may have changed.

    ``looks``: the tree; ``unsettled``: its files that were not :func:`settled`;
    ``packages``: the tracked packages; ``volume``: the volume's :data:`SCAN_KEYS`;
    ``full_at``: ``time.monotonic()`` when every tracked file was last compared;
    ``counts``: the files directly in each package; ``digest``: the listing's, when the
    site gives one, and ``rules``: those it was walked with (the same digest and rules
    again: the same tree). (The inodes of the tree, for
    renames, are the scanner's :class:`.last_scan.LastScan`.)
    """

    looks: dict[str, Look]
    unsettled: set[str]
    packages: frozenset[str]
    volume: dict[str, Any]
    full_at: float
    counts: dict[str, int] = field(default_factory=dict)
    digest: bytes | None = None
    rules: Rules | None = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Scanner:
    """Compares a volume's tree with the tracker's file elements, look after look.

    A new or changed file is published only once it is *stable*: its (size, mtime)
    did not move since the previous look, or its mtime is older than ``settle``
    seconds. The previous look of unstable files is kept in memory between scans.

    :meth:`compare` compares the tree with every tracked file. Once :meth:`remember`
    has kept what a scan saw, :meth:`rescan` compares only what may have changed since:
    files whose (size, mtime) moved, appeared or went away, and files that were not
    :func:`settled`; everything is compared again at least every ``full_every``
    seconds, which bounds how long a change made in the tracker alone to a settled
    file goes unnoticed (an agent tells it which elements changed in the tracker:
    ``changed``).

    ``untracked`` maps the ids of files whose element was deleted in the tracker to
    that element (its ``file_size`` and ``file_mtime``): such a file is not published
    again while its copy is that version (a changed copy is a new file).

    ``last_scan`` keeps the look and inode of each file the last scan saw, for renames
    (default: in memory; an agent with a state directory keeps it there, so that renames
    made while it was stopped are recognised). :meth:`forget` leaves it alone: it
    describes the tree, whatever the tracker says.

    >>> import tempfile, pathlib
    >>> root = tempfile.mkdtemp()
    >>> _ = pathlib.Path(root, "a.txt").write_text("x")
    >>> s = Scanner("paris", root, settle=0)
    >>> changes = s.compare({}, {})
    >>> [e["_id"] for e in changes.publish]
    ['/a.txt']
    >>> s.remember(changes, ["/a.txt"], {})
    >>> bool(s.rescan({}, lambda ids: {}))
    False
    """

    def __init__(
        self,
        site: str,
        root: str | Site,
        *,
        settle: float = 2.0,
        full_every: float = 600.0,
        walker: str = "auto",
        untracked: Mapping[str, Mapping[str, Any]] | None = None,
        last_scan: LastScan | None = None,
    ) -> None:
        self.site = site
        self.last_scan = last_scan if last_scan is not None else LastScan()
        self.untracked: Mapping[str, Mapping[str, Any]] = {} if untracked is None else untracked
        #: where the files are: every look goes through it (a root: a local site)
        self.storage = root if isinstance(root, Site) else LocalSite(root, walker=walker)
        self.settle = settle
        self.full_every = full_every
        self.previous: dict[str, Look] = {}
        self.state: ScanState | None = None

    def compare(
        self,
        volume: Mapping[str, Any],
        known: Mapping[str, Mapping[str, Any]] | Callable[[], Mapping[str, Mapping[str, Any]]],
        *,
        second_look: bool = False,
        on_part: Callable[[ScanChanges], None] | None = None,
    ) -> ScanChanges:
        """The changes between the tree now and ``known`` (every file element, by id).

        ``known`` may be a function returning them: it is called once the walk has
        started, so that GNU find lists the tree while the tracker is read.
        ``on_part(changes)``, when given, is called after each part of the walk with the
        changes found so far, so that a caller can write them while the walk goes on
        (the lists of ``changes`` only grow; the returned changes are the same object).
        """
        started = time.time()  # before any look
        with self.storage.start_listing() as listing:
            if callable(known):
                known = known()
            rules = self.storage.scan_rules(volume, [i for i in known if i.endswith("/")])
            comparison = _Comparison(self, volume, rules, known, started)
            tree = comparison.tree
            parts = self.storage.walk_parts(rules, comparison.seen, started=listing)
            for part in parts:
                tree.update(part)
                comparison.files(part)
                if on_part is not None:
                    on_part(comparison.changes)
        comparison.changes.digest = getattr(listing, "digest", None)
        return comparison.finish(second_look=second_look and self.storage.looks_again)

    def rescan(
        self,
        volume: Mapping[str, Any],
        read: Callable[[list[str]], Mapping[str, Mapping[str, Any]]],
        *,
        second_look: bool = False,
        changed: Iterable[str] = (),
    ) -> ScanChanges | None:
        """The changes since the last scan, reading only the elements that may have changed.

        ``read(ids)`` returns the file elements among ``ids``, by id; ``changed``: ids
        whose element changed in the tracker since the last scan (compared again with
        the files that changed here). ``None`` when
        every tracked file must be compared instead (:meth:`compare`): nothing was
        remembered, the volume's :data:`SCAN_KEYS` or the tracked packages changed, or
        the last full comparison is ``full_every`` seconds old.
        """
        state = self.state
        if (
            state is None
            or time.monotonic() - state.full_at >= self.full_every
            or state.volume != _scan_keys(volume)
        ):
            return None
        rules = self.storage.scan_rules(volume, state.packages)
        started, seen = time.time(), Seen()
        with self.storage.start_listing() as listing:
            digest = listing.wait_digest() if listing is not None else None
            if digest is not None and digest == state.digest and rules == state.rules:
                # the very listing of the last scan, walked with the same rules: the
                # same tree (nothing read again; what may have changed is compared)
                tree, seen.counts = state.looks, state.counts
                seen.inodes = self.last_scan.inodes or {}
            else:
                tree = {}
                for part in self.storage.walk_parts(rules, seen, started=listing):
                    tree.update(part)
        before = state.looks
        moved: set[str] = set()
        if tree is not before and tree != before:
            moved = {i for i, look in tree.items() if before.get(i) != look}
            moved.update(i for i in before if i not in tree)
        ids = moved | state.unsettled | {i for i in changed if i[:1] == "/"}
        # the folders of moved files: one that became a tracked package changes the walk
        folders = {parent_of(i) for i in moved}
        folders.discard("/")
        found = read(sorted(ids | folders))
        for folder_id in folders.union(i for i in ids if i.endswith("/")):
            if (folder_id in found) != (folder_id in state.packages):
                return None
        known = {i: el for i, el in found.items() if i in ids}
        comparison = _Comparison(self, volume, rules, known, started, seen=seen, tree=tree)
        comparison.changes.digest = digest
        comparison.files({i: tree[i] for i in sorted(ids) if i in tree})
        return comparison.finish(second_look=second_look and self.storage.looks_again)

    def remember(
        self,
        changes: ScanChanges,
        published: Iterable[str],
        updated: Mapping[str, Mapping[str, Any] | None],
    ) -> None:
        """Keep what the scan of ``changes`` saw for the next :meth:`rescan`, once its
        writes are done: ``published`` lists the ids its publish created, ``updated``
        maps each id it updated to the element the tracker returned (``None`` where
        the element was gone)."""
        tree, site = changes.tree, self.site
        precision = self.storage.precision_ns
        unsettled = changes.unsettled
        # a published element holds what the scan wrote: the version this site has
        published = list(published)
        unsettled.difference_update(published)
        packages = set(changes.packages)
        packages.update(i for i in published if i[-1] == "/")
        for file_id, el in updated.items():
            look = tree.get(file_id)
            if look is None:
                continue
            if settled(look, el, site, precision):
                unsettled.discard(file_id)
            else:
                unsettled.add(file_id)
        previous = self.state
        full_at = time.monotonic() if changes.full or previous is None else previous.full_at
        self.last_scan.keep(tree, changes.inodes)
        self.state = ScanState(
            tree,
            unsettled,
            frozenset(packages),
            changes.volume,
            full_at,
            changes.counts,
            changes.digest,
            changes.rules,
        )

    def forget(self) -> None:
        """Drop what :meth:`remember` kept: the next :meth:`rescan` returns ``None``."""
        self.state = None


class _Comparison:
    """One comparison of the tree with the tracker, fed the walk's looks part by part
    (:meth:`files`), ended by :meth:`finish` (second looks, deletions)."""

    def __init__(
        self,
        scanner: Scanner,
        volume: Mapping[str, Any],
        rules: Rules,
        known: Mapping[str, Mapping[str, Any]],
        started: float,
        *,
        seen: Seen | None = None,
        tree: dict[str, Look] | None = None,
    ) -> None:
        """``tree``: the whole walk, when it is done already (a rescan: only some of its
        files are compared); else the walk's parts are added to :attr:`tree`."""
        self.scanner = scanner
        self.site = scanner.site
        #: the precision of the listing's mtimes (ns): every comparison with an element
        #: is made at the coarser of it and the element's (:func:`.state.same_mtime`)
        self.precision = scanner.storage.precision_ns
        self.rules = rules
        self.known = known
        self.seen = seen if seen is not None else Seen()
        self.tree: dict[str, Look] = {} if tree is None else tree
        self.changes = ScanChanges(
            errors=self.seen.errors,
            tree=self.tree,
            inodes=self.seen.inodes,
            counts=self.seen.counts,
            full=tree is None,
        )
        self.changes.packages = rules.packages
        self.changes.rules = rules
        self.changes.volume = _scan_keys(volume)
        self.ignore_existing = bool(volume.get("ignoreExistingFiles"))
        self.record_deleted = bool(volume.get("enableDiscoveryDeletedFiles", True))
        # false: new files only; a tracked file changed here is neither a new version
        # nor a conflict (a transfer still never overwrites it: it keeps both)
        self.record_updated = bool(volume.get("enableDiscoveryUpdatedFiles", True))
        self.started = started  # when the walk started (time.time())
        # the time of the versions written, and the baseline of the copies recorded here:
        # a copy written before the walk started has an mtime before it
        self.now = now_ms()
        # a listing coarser than a millisecond truncates: a file's time is up to one
        # step of it older than the file's
        extra = self.precision if self.precision > 1_000_000 else 0
        self.quiet_since = int((self.started - scanner.settle) * 1e9) - extra  # ns, as mtimes
        self.unstable: dict[str, tuple[Look, Mapping[str, Any] | None]] = {}

    def files(self, looks: Mapping[str, Look]) -> None:
        """Compare these looks (by file id) with their elements."""
        site = self.site
        changes = self.changes
        unsettled = changes.unsettled
        known = self.known
        new = [i for i in looks if i not in known] if known else list(looks)
        if new:
            self._new_files(new, looks)
            if len(new) == len(looks):
                return
        get = known.get
        keys = site_keys(site)
        synced_key, conflict_key, error_key = keys.synced, keys.conflict, keys.error
        for file_id, looked in looks.items():
            el = get(file_id)
            if el is None:
                continue
            # The usual case, inline: this site holds the version the element records
            # (synced here since it was made), and nothing is pending here.
            mtime, synced = el.get("file_mtime"), el.get(synced_key)
            if (
                el.get("file_size") == looked[0]
                and mtime.__class__ is int
                and mtime == looked[1] // 1_000_000
                and synced.__class__ is int
                and synced >= (el.get("time") or 0)
                and not el.get("deleted")
                and conflict_key not in el
                and el.get(error_key) is None
            ):
                continue
            if look_matches(looked, el, self.precision):
                patch: dict[str, Any] = {}
                if not recorded_exactly(looked, el, self.precision):
                    # in seconds, as earlier versions wrote it: the same version, in ms
                    patch["file_mtime"] = mtime_ms(looked[1])
                holds = holds_current(el, site)
                if deleted_here(el, site):
                    patch.update(deleted=None, deleted_time=None, deleted_at=None)
                elif not holds and el.get("time"):
                    # we already hold this version (copied earlier, or before a restart)
                    patch[synced_key] = el["time"]
                if el.get(conflict_key):
                    patch[conflict_key] = None
                if el.get(error_key) is not None and holds_current({**el, **patch}, site):
                    patch[error_key] = None
                if patch:
                    changes.update.append({"_id": file_id, **patch})
                if patch or not holds:
                    unsettled.add(file_id)
                continue
            unsettled.add(file_id)
            if self.ignore_existing:
                continue
            if not self.record_updated and not deleted_here(el, site):
                continue
            if deleted_here(el, site) or holds_current(el, site):
                self._candidate(file_id, looked, el)  # back, or modified here
                continue
            if changed_here(looked[1], el, site, self.precision) and not el.get(conflict_key):
                changes.conflicts.append(file_id)
                record = conflict_record(self.now, site, None, looked[0], mtime_ms(looked[1]))
                changes.update.append({"_id": file_id, conflict_key: record})
            # else: an outdated copy that nobody touched here; the planner fetches it

    def _stable(self, file_id: str, looked: Look) -> bool:
        return looked[1] < self.quiet_since or same_look(self.scanner.previous.get(file_id), looked)

    def _new_files(self, ids: list[str], looks: Mapping[str, Look]) -> None:
        """Files the tracker does not know: published when stable (in bulk: a first
        scan publishes the whole tree), unless untracked as they are."""
        untracked = self.scanner.untracked
        if untracked:
            precision = self.precision
            ids = [
                i
                for i in ids
                if i not in untracked or not look_matches(looks[i], untracked[i], precision)
            ]
        self.changes.unsettled.update(ids)
        quiet = self.quiet_since
        recent = [i for i in ids if looks[i][1] >= quiet]  # usually none
        if recent:
            moving = {i for i in recent if not self._stable(i, looks[i])}
            self.unstable.update((i, (looks[i], None)) for i in moving)
            ids = [i for i in ids if i not in moving]
        self._publish(ids, looks, self.now)

    def _publish(self, ids: list[str], looks: Mapping[str, Look], now: int) -> None:
        site, key = self.site, site_keys(self.site).synced
        comment = f"scanned at {site}"
        # synced_<site>: the baseline a later local change is compared with (conflicts)
        new = [
            {
                "_id": i,
                "origin": site,
                "comment": comment,
                "file_size": size,
                "file_mtime": mtime // 1_000_000,
                # the version's time is the baseline: the site holds it (synced >= time)
                "time": now,
                key: now,
            }
            for i, (size, mtime) in zip(ids, map(looks.__getitem__, ids))
        ]
        counts = self.seen.counts
        if counts:
            for e in new:
                if e["_id"] in counts:
                    e["file_count"] = counts[e["_id"]]
        self.changes.publish.extend(new)

    def _candidate(self, file_id: str, looked: Look, el: Mapping[str, Any]) -> None:
        """A changed file: its new version is written when stable, else it is kept
        for a second look."""
        if self._stable(file_id, looked):
            self._new_version(file_id, looked, el, self.now)
        else:
            self.unstable[file_id] = (looked, el)

    def _new_version(self, file_id: str, looked: Look, el: Mapping[str, Any], now: int) -> None:
        keys = site_keys(self.site)
        # the element keeps its publisher's comment: the new version's own words go
        # into its history child (see ScanChanges.history)
        patch = {
            "_id": file_id,
            "file_size": looked[0],
            "file_mtime": mtime_ms(looked[1]),
            "time": now,
            keys.modified: now,
            keys.synced: now,
        }
        counts = self.seen.counts
        if file_id in counts:
            patch["file_count"] = counts[file_id]
        if el.get("deleted"):
            patch.update(deleted=None, deleted_time=None, deleted_at=None)
        if el.get(keys.wait) is not None:
            patch[keys.wait] = None
        if el.get(keys.error) is not None:
            patch[keys.error] = None
        self.changes.update.append(patch)
        self.changes.base[file_id] = el.get("time")

    def finish(self, *, second_look: bool) -> ScanChanges:
        """Look again at the unstable files (after ``settle`` seconds when
        ``second_look``), record deletions; returns the changes."""
        scanner, changes, tree = self.scanner, self.changes, self.tree
        changes.seen = len(tree)
        unstable = self.unstable
        if unstable and second_look and scanner.settle > 0:
            time.sleep(scanner.settle)
            now = now_ms()  # the second look comes after these files' mtimes
            still = {}
            for file_id, (looked, el) in unstable.items():
                again = scanner.storage.look(file_id)
                if same_look(again, looked):
                    if el is None:
                        self._publish([file_id], {file_id: looked}, now)
                    else:
                        self._new_version(file_id, looked, el, now)
                elif again is not None:
                    still[file_id] = (again, el)
            unstable = still
        scanner.previous = {i: looked for i, (looked, _) in unstable.items()}
        changes.pending = list(unstable)
        self._folds()
        if self.record_deleted:
            self._deletions()
            self._renames()
        return changes

    def _renames(self) -> None:
        """Recognise renames among this scan's deletions at the origin and its new
        files: a file that went away and one that appeared with the same size,
        mtime (to the nanosecond) and inode (device and number) as the last scan saw of
        the old one (:class:`.last_scan.LastScan`, kept across restarts with a state
        directory), the only such pair on both sides. A copy (another inode) is a new
        file; so is any new file when no scan of this agent saw the old one (nothing to
        compare the inode with). The deletion records ``renamed_to``, the new file
        ``renamed_from`` (see :mod:`.deletions`: other sites apply it as a move)."""
        changes, known, tree = self.changes, self.known, self.tree
        gone = [p for p in changes.update if p.get("deleted") is True]
        if not gone or not changes.publish:
            return
        olds: dict[tuple[Any, Any, bool], list[dict[str, Any]]] = {}
        for patch in gone:
            el = known[patch["_id"]]
            key = (el.get("file_size"), el.get("file_mtime"), patch["_id"][-1] == "/")
            olds.setdefault(key, []).append(patch)
        news: dict[tuple[Any, Any, bool], list[dict[str, Any]]] = {}
        for el in changes.publish:
            key = (el["file_size"], el["file_mtime"], el["_id"][-1] == "/")
            if key in olds:
                news.setdefault(key, []).append(el)
        # the unique pairs (one deletion, one new file: more is ambiguous)
        pairs = [
            (olds[k][0], found[0]) for k, found in news.items() if len(found) == len(olds[k]) == 1
        ]
        last = self.scanner.last_scan.get(patch["_id"] for patch, _ in pairs)
        inodes = self.seen.inodes
        for patch, new in pairs:
            old_id, new_id = patch["_id"], new["_id"]
            if last.get(old_id) != (tree.get(new_id), inodes.get(new_id)):
                continue  # not the same file: a copy, or one the last scan did not see
            patch["renamed_to"] = new_id
            new["renamed_from"] = old_id
            new["comment"] = f"renamed from {old_id} at {self.site}"

    def _folds(self) -> None:
        """The per-file elements directly inside a package the walk found (tracked
        before the folder became a package): the package holds them now."""
        rules, tree, fold = self.rules, self.tree, self.changes.fold
        if not rules.discover_packages:
            return
        for file_id in sorted(self.known.keys() - tree.keys()):
            parent = parent_of(file_id)
            if (
                file_id[-1] != "/"
                and parent in tree
                and not _in_scope(file_id, rules)
                and not self.seen.covers(file_id)
            ):
                fold.setdefault(parent, []).append(file_id)

    def _deletions(self) -> None:
        site, rules, seen, known = self.site, self.rules, self.seen, self.known
        now = self.now
        gone = []
        deleting: set[str] = set()  # deletions of the file, not of a copy
        for file_id in sorted(known.keys() - self.tree.keys()):
            el = known[file_id]
            if el.get("origin") == site or writer_of(el) == site:
                # The origin, or the site that wrote the current version, deleting its
                # copy deletes the file. Only the version the origin holds is deleted
                # there: a newer one written elsewhere (after the origin's deletion was
                # recorded, say) was never here, and its synced_<site> stays the baseline
                # of a later local change.
                if not el.get("deleted") and holds_current(el, site):
                    gone.append(file_id)
                    deleting.add(file_id)
            elif el.get(site_keys(site).synced) is not None:
                gone.append(file_id)
        for file_id in gone:
            el = known[file_id]
            if (
                seen.covers(file_id)  # not read this time: not known to be gone
                or not rules.wants(file_id)
                or not _in_scope(file_id, rules)
            ):
                continue
            if file_id in deleting:
                self.changes.update.append(
                    {"_id": file_id, "deleted": True, "deleted_time": now, "deleted_at": site}
                )
                self.changes.base[file_id] = el.get("time")
            else:
                # our copy went away: forget it so that it is fetched again if wanted
                self.changes.update.append({"_id": file_id, site_keys(site).synced: None})


def _in_scope(file_id: str, rules: Rules) -> bool:
    # a file inside a package folder is covered by the package element
    parent = parent_of(file_id)
    return not (rules.discover_packages and parent != "/" and rules.is_package(parent))


__all__ = [
    "CONFLICT_MARK",
    "SCAN_KEYS",
    "Rules",
    "ScanChanges",
    "ScanState",
    "Scanner",
    "changed_since",
    "history_of",
    "holds_current",
    "look_matches",
    "mtime_ms",
    "recorded_exactly",
    "same_look",
    "same_mtime",
    "settled",
    "writer_of",
]
