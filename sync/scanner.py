"""The tracker side of a scan: compare a volume's tree with the file elements.

:class:`Scanner` walks the tree (:func:`.tree.walk`), compares it with what the
tracker knows and returns the writes to make (:class:`ScanChanges`). It writes
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

from .tree import CONFLICT_MARK, Look, Rules, look_at, parent_of, same_look, walk


def writer_of(element: Mapping[str, Any]) -> str | None:
    """The site whose scan produced the element's current version.

    The site with the latest ``modified_<site>`` when that is not older than
    ``time``, else the ``origin``.

    >>> writer_of({"origin": "paris", "time": 5, "modified_tokyo": 5})
    'tokyo'
    >>> writer_of({"origin": "paris", "time": 9, "modified_tokyo": 5})
    'paris'
    """
    t = element.get("time") or 0
    best, best_t = None, -1
    for key in element:
        # the first-letter test keeps this cheap on the many elements with no modified_ key
        if key[0] != "m" or not key.startswith("modified_"):
            continue
        value = element[key]
        if isinstance(value, int | float) and value >= t and value > best_t:
            best, best_t = key[9:], value
    return best or element.get("origin")


def holds_current(element: Mapping[str, Any], site: str) -> bool:
    """True when ``site`` holds the element's current version (it wrote it or synced it)."""
    if element.get("deleted") and element.get("origin") == site:
        return False
    synced = element.get("synced_" + site)
    if isinstance(synced, int | float) and synced >= (element.get("time") or 0):
        return True
    return writer_of(element) == site


def changed_since(mtime: float, synced: Any) -> bool:
    """True when a copy whose mtime is ``mtime`` (seconds) was written after the
    site's sync baseline ``synced`` (ms since epoch; ``None``: the site never synced).

    Compared at the millisecond: a baseline is a whole millisecond taken when the
    scan that recorded the copy started, so a copy written earlier in that same
    millisecond is not a later change.

    >>> changed_since(1.0004, 1000), changed_since(1.0014, 1000), changed_since(1.0, None)
    (False, True, True)
    """
    return synced is None or int(mtime * 1000) > synced


def element_look(element: Mapping[str, Any]) -> Look | None:
    size, mtime = element.get("file_size"), element.get("file_mtime")
    if not isinstance(size, int) or not isinstance(mtime, int | float):
        return None
    return (size, float(mtime))


#: the volume keys a scan reads: when one of them changes, the next scan compares everything
SCAN_KEYS = (
    "includePatternRules",
    "excludePatternRules",
    "excludedFiles",
    "packagePatternRules",
    "enableDiscoveryPackages",
    "ignoreExistingFiles",
    "enableDiscoveryDeletedFiles",
)


def _scan_keys(volume: Mapping[str, Any]) -> dict[str, Any]:
    return {k: volume.get(k) for k in SCAN_KEYS}


def settled(look: Look, element: Mapping[str, Any] | None, site: str) -> bool:
    """True when ``element`` records ``look`` as the version ``site`` holds, with no
    deletion, conflict or error pending there: while neither changes, a scan has
    nothing to write for that file.

    >>> el = {"origin": "paris", "time": 5, "file_size": 3, "file_mtime": 1.5}
    >>> settled((3, 1.5), el, "paris"), settled((4, 1.5), el, "paris"), settled((3, 1.5), el, "tokyo")
    (True, False, False)
    """
    return (
        element is not None
        and same_look(look, element_look(element))
        and holds_current(element, site)
        and not element.get("deleted")
        and not element.get(f"conflict_{site}")
        and element.get(f"syncError_{site}") is None
    )


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
    errors: list[str] = field(default_factory=list)
    seen: int = 0
    tree: dict[str, Look] = field(default_factory=dict, repr=False)
    unsettled: set[str] = field(default_factory=set, repr=False)  # compared again next scan
    packages: frozenset[str] = frozenset()  # the tracked packages the walk used
    volume: dict[str, Any] = field(default_factory=dict, repr=False)  # its SCAN_KEYS
    full: bool = True  # every tracked file was compared (False: only what may have changed)

    def __bool__(self) -> bool:
        return bool(self.publish or self.update)


@dataclass
class ScanState:
    """What the last scan saw, so that the next one compares only what may have changed.

    ``looks``: the tree; ``unsettled``: its files that were not :func:`settled`;
    ``packages``: the tracked packages; ``volume``: the volume's :data:`SCAN_KEYS`;
    ``full_at``: ``time.monotonic()`` when every tracked file was last compared.
    """

    looks: dict[str, Look]
    unsettled: set[str]
    packages: frozenset[str]
    volume: dict[str, Any]
    full_at: float


@dataclass
class _Walked:
    tree: dict[str, Look]
    counts: dict[str, int]  # files directly inside each package
    errors: list[str]
    time: float  # when the walk started (time.time())


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
    file (an element deleted by hand, say) goes unnoticed.

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
        self, site: str, root: str, *, settle: float = 2.0, full_every: float = 600.0
    ) -> None:
        self.site = site
        self._scanned_at = f"scanned at {site}"  # made once: scans write them per file
        self._synced_key = f"synced_{site}"
        self.root = root
        self.settle = settle
        self.full_every = full_every
        self.previous: dict[str, Look] = {}
        self.state: ScanState | None = None

    def look(self, rules: Rules, errors: list[str], counts: dict[str, int]) -> dict[str, Look]:
        return walk(self.root, rules, errors=errors, package_counts=counts)

    def _walk(self, rules: Rules) -> _Walked:
        walked = _Walked({}, {}, [], time.time())
        walked.tree = self.look(rules, walked.errors, walked.counts)
        return walked

    def compare(
        self,
        volume: Mapping[str, Any],
        known: Mapping[str, Mapping[str, Any]],
        *,
        second_look: bool = False,
    ) -> ScanChanges:
        """The changes between the tree now and ``known`` (every file element, by id)."""
        rules = Rules.from_volume(volume, [i for i in known if i.endswith("/")])
        return self._diff(volume, rules, self._walk(rules), known, None, second_look=second_look)

    def rescan(
        self,
        volume: Mapping[str, Any],
        read: Callable[[list[str]], Mapping[str, Mapping[str, Any]]],
        *,
        second_look: bool = False,
    ) -> ScanChanges | None:
        """The changes since the last scan, reading only the elements that may have changed.

        ``read(ids)`` returns the file elements among ``ids``, by id. ``None`` when
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
        rules = Rules.from_volume(volume, state.packages)
        walked = self._walk(rules)
        tree, before = walked.tree, state.looks
        changed: set[str] = set()
        if tree != before:
            changed = {i for i, look in tree.items() if before.get(i) != look}
            changed.update(i for i in before if i not in tree)
        ids = changed | state.unsettled
        # the folders of changed files: one that became a tracked package changes the walk
        folders = {parent_of(i) for i in changed}
        folders.discard("/")
        found = read(sorted(ids | folders))
        for folder_id in folders.union(i for i in ids if i.endswith("/")):
            if (folder_id in found) != (folder_id in state.packages):
                return None
        known = {i: el for i, el in found.items() if i in ids}
        return self._diff(volume, rules, walked, known, ids, second_look=second_look)

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
            if settled(look, el, site):
                unsettled.discard(file_id)
            else:
                unsettled.add(file_id)
        previous = self.state
        full_at = time.monotonic() if changes.full or previous is None else previous.full_at
        self.state = ScanState(tree, unsettled, frozenset(packages), changes.volume, full_at)

    def forget(self) -> None:
        """Drop what :meth:`remember` kept: the next :meth:`rescan` returns ``None``."""
        self.state = None

    def _diff(
        self,
        volume: Mapping[str, Any],
        rules: Rules,
        walked: _Walked,
        known: Mapping[str, Mapping[str, Any]],
        ids: set[str] | None,
        *,
        second_look: bool,
    ) -> ScanChanges:
        """The changes for the files ``ids`` (every file in the tree when ``None``);
        ``known`` holds their elements (every tracked file when ``ids`` is ``None``)."""
        site = self.site
        tree, counts = walked.tree, walked.counts
        changes = ScanChanges(errors=walked.errors, seen=len(tree), tree=tree, full=ids is None)
        changes.packages = rules.packages
        changes.volume = _scan_keys(volume)
        unsettled = changes.unsettled
        ignore_existing = bool(volume.get("ignoreExistingFiles"))
        record_deleted = bool(volume.get("enableDiscoveryDeletedFiles", True))
        now = now_ms()
        candidates: dict[str, tuple[Look, dict[str, Any] | None]] = {}

        get = known.get
        looked_at = (
            tree.items() if ids is None else [(i, tree[i]) for i in sorted(ids) if i in tree]
        )
        for file_id, looked in looked_at:
            el = get(file_id)
            if el is None:
                candidates[file_id] = (looked, None)
                unsettled.add(file_id)
                continue
            current = element_look(el)
            if same_look(looked, current):
                patch: dict[str, Any] = {}
                holds = holds_current(el, site)
                if el.get("deleted") and el.get("origin") == site:
                    patch.update(deleted=None, deleted_time=None)
                elif not holds and el.get("time"):
                    # we already hold this version (copied earlier, or before a restart)
                    patch[f"synced_{site}"] = el["time"]
                if el.get(f"conflict_{site}"):
                    patch[f"conflict_{site}"] = None
                if el.get(f"syncError_{site}") is not None and holds_current({**el, **patch}, site):
                    patch[f"syncError_{site}"] = None
                if patch:
                    changes.update.append({"_id": file_id, **patch})
                if patch or not holds:
                    unsettled.add(file_id)
                continue
            unsettled.add(file_id)
            if ignore_existing:
                continue
            if el.get("deleted") and el.get("origin") == site:
                candidates[file_id] = (looked, el)
                continue
            if holds_current(el, site):
                candidates[file_id] = (looked, el)  # modified here
                continue
            synced = el.get(f"synced_{site}")
            locally_changed = changed_since(looked[1], synced)
            conflicting = locally_changed and (site != el.get("origin") or synced is not None)
            if conflicting and not el.get(f"conflict_{site}"):
                changes.conflicts.append(file_id)
                changes.update.append(
                    {
                        "_id": file_id,
                        f"conflict_{site}": {
                            "time": now,
                            "from": site,
                            "incoming": None,
                            "local_size": looked[0],
                            "local_mtime": looked[1],
                        },
                    }
                )
            # else: an outdated copy that nobody touched here; the planner fetches it

        # stable candidates become writes; others wait for the next look
        unstable = []
        quiet_since = walked.time - self.settle
        previous = self.previous
        for file_id, (looked, el) in candidates.items():
            if looked[1] < quiet_since or same_look(previous.get(file_id), looked):
                self._write(changes, file_id, looked, el, counts, now)
            else:
                unstable.append(file_id)
        if unstable and second_look and self.settle > 0:
            time.sleep(self.settle)
            still = []
            for file_id in unstable:
                again = look_at(self.root, file_id)
                looked, el = candidates[file_id]
                if same_look(again, looked):
                    self._write(changes, file_id, looked, el, counts, now)
                elif again is not None:
                    candidates[file_id] = (again, el)
                    still.append(file_id)
            unstable = still
        self.previous = {i: candidates[i][0] for i in unstable}
        changes.pending = unstable

        if record_deleted:
            for file_id, el in known.items():
                if el.get("origin") != site and el.get(f"synced_{site}") is None:
                    continue
                if (
                    file_id in tree
                    or not rules.wants(file_id)
                    or not self._in_scope(file_id, rules)
                ):
                    continue
                if el.get("origin") == site:
                    if not el.get("deleted"):
                        changes.update.append(
                            {
                                "_id": file_id,
                                "deleted": True,
                                "deleted_time": now,
                                "comment": f"deleted at {site}",
                            }
                        )
                elif el.get(f"synced_{site}") is not None:
                    # our copy went away: forget it so that it is fetched again if wanted
                    changes.update.append({"_id": file_id, f"synced_{site}": None})
        return changes

    def _in_scope(self, file_id: str, rules: Rules) -> bool:
        # a file inside a package folder is covered by the package element
        parent = parent_of(file_id)
        return not (rules.discover_packages and parent != "/" and rules.is_package(parent))

    def _write(
        self,
        changes: ScanChanges,
        file_id: str,
        looked: Look,
        el: Mapping[str, Any] | None,
        counts: Mapping[str, int],
        now: int,
    ) -> None:
        site = self.site
        if el is None:
            new = {
                "_id": file_id,
                "origin": site,
                "comment": self._scanned_at,
                "file_size": looked[0],
                "file_mtime": looked[1],
                # the baseline a later local change is compared with (see conflicts)
                self._synced_key: now,
            }
            if file_id in counts:
                new["file_count"] = counts[file_id]
            changes.publish.append(new)
            return
        patch = {
            "_id": file_id,
            "file_size": looked[0],
            "file_mtime": looked[1],
            "time": now,
            f"modified_{site}": now,
            self._synced_key: now,
            "comment": f"modified at {site}",
        }
        if file_id in counts:
            patch["file_count"] = counts[file_id]
        if el.get("deleted"):
            patch.update(deleted=None, deleted_time=None)
        if el.get(f"syncWait_{site}") is not None:
            patch[f"syncWait_{site}"] = None
        if el.get(f"syncError_{site}") is not None:
            patch[f"syncError_{site}"] = None
        changes.update.append(patch)


__all__ = [
    "CONFLICT_MARK",
    "SCAN_KEYS",
    "Rules",
    "ScanChanges",
    "ScanState",
    "Scanner",
    "element_look",
    "holds_current",
    "look_at",
    "same_look",
    "settled",
    "walk",
    "writer_of",
]
