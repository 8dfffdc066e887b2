"""The filesystem side of a scan: walk a volume once and say what changed.

:func:`walk` reads the tree with ``os.scandir`` (one ``stat`` per file, no symlink
followed) and applies the volume's rules; :class:`Scanner` compares the result with
what the tracker knows and returns the writes to make (:class:`ScanChanges`). It
writes nothing itself, so a rescan of an unchanged tree gives empty changes.

Rules (all optional, from the volume element):

- ``includePatternRules``: RE2 patterns searched in the file id; when any is given a
  file must match one of them;
- ``excludePatternRules``: RE2 patterns; a file id, or a folder id ending in ``/``
  (the folder is then not entered), that matches one is skipped;
- ``excludedFiles``: exact names (``Thumbs.db``) or ids (``/tmp/x``) skipped;
- ``packagePatternRules``: RE2 patterns on folder ids; with
  ``enableDiscoveryPackages`` a matching folder is a folder package. A folder
  already tracked with an id ending in ``/`` is a package at every site.

Symlinks, sockets and devices are never tracked. rsync's partial directory, its
temporary files (``.name.XXXXXX``) and the renamed copies kept by a conflict
(``name.conflict-<site>-<stamp>.ext``) are skipped.

>>> import tempfile, pathlib
>>> root = tempfile.mkdtemp()
>>> _ = pathlib.Path(root, "a.txt").write_text("hello")
>>> {k: v[0] for k, v in walk(root).items()}
{'/a.txt': 5}
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from damas_core.errors import BadRequest

from .rsync import PARTIAL_DIR

log = logging.getLogger(__name__)

# rsync's temporary file names: ".<name>.<6 random characters>"
_RSYNC_TEMP = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")
CONFLICT_MARK = re.compile(r"\.conflict-[a-z0-9_]{3,16}-\d{8}T\d{6}Z")
#: mtimes closer than this (seconds) are the same: a float holds a ns mtime to ~0.25 µs
MTIME_TOLERANCE = 1e-6

Look = tuple[int, float]  # (size, mtime) of a file; for a package: totals of its direct files


def same_look(a: Look | None, b: Look | None) -> bool:
    """True when two (size, mtime) looks describe the same content version."""
    if a is None or b is None:
        return a is b
    return a[0] == b[0] and abs(a[1] - b[1]) <= MTIME_TOLERANCE


def _compile(patterns: Iterable[str] | None, key: str) -> list[Any]:
    out = []
    for p in patterns or ():
        try:
            out.append(re2.compile(p))
        except Exception as e:
            raise BadRequest(f"sync error: {key}: bad pattern {p!r}: {e}", key=key) from e
    return out


@dataclass
class Rules:
    """The volume's include/exclude/package rules, compiled once.

    >>> r = Rules.from_volume({"excludePatternRules": [r"\\.tmp$"], "excludedFiles": ["Thumbs.db"]})
    >>> r.wants("/a.exr"), r.wants("/a.tmp"), r.wants("/x/Thumbs.db")
    (True, False, False)
    """

    include: list[Any] = field(default_factory=list)
    exclude: list[Any] = field(default_factory=list)
    excluded: frozenset[str] = frozenset()
    package_rules: list[Any] = field(default_factory=list)
    packages: frozenset[str] = frozenset()  # folder ids known as packages
    discover_packages: bool = False

    @classmethod
    def from_volume(cls, volume: Mapping[str, Any], packages: Iterable[str] = ()) -> Rules:
        discover = bool(volume.get("enableDiscoveryPackages", False))
        return cls(
            include=_compile(volume.get("includePatternRules"), "includePatternRules"),
            exclude=_compile(volume.get("excludePatternRules"), "excludePatternRules"),
            excluded=frozenset(volume.get("excludedFiles") or ()),
            package_rules=_compile(volume.get("packagePatternRules"), "packagePatternRules")
            if discover
            else [],
            # packages already tracked are packages at every site
            packages=frozenset(packages),
            discover_packages=discover or bool(packages),
        )

    def wants(self, file_id: str) -> bool:
        """True when a file (or package) id passes the include/exclude rules."""
        name = file_id.rstrip("/").rsplit("/", 1)[-1]
        if name in self.excluded or file_id in self.excluded:
            return False
        if any(p.search(file_id) for p in self.exclude):
            return False
        if self.include and not file_id.endswith("/"):
            return any(p.search(file_id) for p in self.include)
        return True

    def enters(self, folder_id: str) -> bool:
        """True when the walk descends into the folder ``folder_id`` (ends with ``/``)."""
        name = folder_id[:-1].rsplit("/", 1)[-1]
        if name in self.excluded or folder_id in self.excluded:
            return False
        return not any(p.search(folder_id) for p in self.exclude)

    def is_package(self, folder_id: str) -> bool:
        return folder_id in self.packages or any(p.search(folder_id) for p in self.package_rules)


def _skipped_name(name: str) -> bool:
    if name == PARTIAL_DIR or CONFLICT_MARK.search(name):
        return True
    if name[0] == "." and _RSYNC_TEMP.match(name):
        return True
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            log.warning("skipping a name that is not valid UTF-8: %r", name)
            return True
    return False


def package_look(path: str) -> tuple[Look, int] | None:
    """(size sum, latest mtime) and file count of the files directly inside ``path``."""
    size = 0
    mtime = 0.0
    count = 0
    try:
        # the folder's own mtime is left out: rsync's partial directory touches it
        with os.scandir(path) as it:
            for e in it:
                if _skipped_name(e.name) or not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
                size += st.st_size
                count += 1
                if st.st_mtime > mtime:
                    mtime = st.st_mtime
    except OSError:
        return None
    return (size, mtime), count


def walk(
    root: str,
    rules: Rules | None = None,
    *,
    errors: list[str] | None = None,
    package_counts: dict[str, int] | None = None,
) -> dict[str, Look]:
    """Every tracked-to-be file under ``root`` as ``{id: (size, mtime)}``.

    Ids are paths from ``root`` starting with ``/``. A folder package appears once,
    as its id ending in ``/``; its subfolders are walked as usual. Unreadable folders
    are skipped and reported in ``errors``. A package's look is the size sum and the
    latest mtime of its direct files (the folder's own mtime is not used).
    """
    rules = rules or Rules()
    check_rules = bool(rules.include or rules.exclude or rules.excluded)
    out: dict[str, Look] = {}
    stack: list[tuple[str, str]] = [("/", root)]
    while stack:
        prefix, path = stack.pop()
        try:
            it = os.scandir(path)
        except OSError as e:
            if errors is not None:
                errors.append(f"{prefix}: {e.strerror or e}")
            continue
        with it:
            for entry in it:
                name = entry.name
                if _skipped_name(name):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folder = prefix + name + "/"
                        if check_rules and not rules.enters(folder):
                            continue
                        if rules.discover_packages and rules.is_package(folder):
                            looked = package_look(entry.path)
                            if looked is not None and (not check_rules or rules.wants(folder)):
                                out[folder] = looked[0]
                                if package_counts is not None:
                                    package_counts[folder] = looked[1]
                            # its subfolders are ordinary folders
                            with os.scandir(entry.path) as sub:
                                for s in sub:
                                    if not _skipped_name(s.name) and s.is_dir(
                                        follow_symlinks=False
                                    ):
                                        sub_id = folder + s.name + "/"
                                        if not check_rules or rules.enters(sub_id):
                                            stack.append((sub_id, s.path))
                        else:
                            stack.append((folder, entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        file_id = prefix + name
                        if check_rules and not rules.wants(file_id):
                            continue
                        st = entry.stat(follow_symlinks=False)
                        out[file_id] = (st.st_size, st.st_mtime)
                except OSError as e:
                    if errors is not None:
                        errors.append(f"{prefix}{name}: {e.strerror or e}")
    return out


def look_at(root: str, file_id: str) -> Look | None:
    """The current (size, mtime) of one file or package under ``root``, or ``None``."""
    path = os.path.join(root, file_id.lstrip("/"))
    if file_id.endswith("/"):
        looked = package_look(path)
        return None if looked is None else looked[0]
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime)


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


def element_look(element: Mapping[str, Any]) -> Look | None:
    size, mtime = element.get("file_size"), element.get("file_mtime")
    if not isinstance(size, int) or not isinstance(mtime, int | float):
        return None
    return (size, float(mtime))


@dataclass
class ScanChanges:
    """The writes one scan asks for; empty when the tree did not change."""

    publish: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # new or changed files not stable yet
    errors: list[str] = field(default_factory=list)
    seen: int = 0

    def __bool__(self) -> bool:
        return bool(self.publish or self.update)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Scanner:
    """Compares a volume's tree with the tracker's file elements, look after look.

    A new or changed file is published only once it is *stable*: its (size, mtime)
    did not move since the previous look, or its mtime is older than ``settle``
    seconds. The previous look of unstable files is kept in memory between scans.

    >>> import tempfile, pathlib
    >>> root = tempfile.mkdtemp()
    >>> _ = pathlib.Path(root, "a.txt").write_text("x")
    >>> s = Scanner("paris", root, settle=0)
    >>> [e["_id"] for e in s.compare({}, {}).publish]
    ['/a.txt']
    """

    def __init__(self, site: str, root: str, *, settle: float = 2.0) -> None:
        self.site = site
        self.root = root
        self.settle = settle
        self.previous: dict[str, Look] = {}

    def look(self, rules: Rules, errors: list[str], counts: dict[str, int]) -> dict[str, Look]:
        return walk(self.root, rules, errors=errors, package_counts=counts)

    def compare(
        self,
        volume: Mapping[str, Any],
        known: Mapping[str, Mapping[str, Any]],
        *,
        second_look: bool = False,
    ) -> ScanChanges:
        """The changes between the tree now and ``known`` (file elements by id)."""
        site = self.site
        packages = [i for i in known if i.endswith("/")]
        rules = Rules.from_volume(volume, packages)
        changes = ScanChanges()
        counts: dict[str, int] = {}
        look_time = time.time()
        tree = self.look(rules, changes.errors, counts)
        changes.seen = len(tree)
        ignore_existing = bool(volume.get("ignoreExistingFiles"))
        record_deleted = bool(volume.get("enableDiscoveryDeletedFiles", True))
        now = now_ms()
        candidates: dict[str, tuple[Look, dict[str, Any] | None]] = {}

        get = known.get
        for file_id, looked in tree.items():
            el = get(file_id)
            if el is None:
                candidates[file_id] = (looked, None)
                continue
            current = element_look(el)
            if same_look(looked, current):
                patch: dict[str, Any] = {}
                if el.get("deleted") and el.get("origin") == site:
                    patch.update(deleted=None, deleted_time=None)
                elif not holds_current(el, site) and el.get("time"):
                    # we already hold this version (copied earlier, or before a restart)
                    patch[f"synced_{site}"] = el["time"]
                if el.get(f"conflict_{site}"):
                    patch[f"conflict_{site}"] = None
                if el.get(f"syncError_{site}") is not None and holds_current({**el, **patch}, site):
                    patch[f"syncError_{site}"] = None
                if patch:
                    changes.update.append({"_id": file_id, **patch})
                continue
            if ignore_existing:
                continue
            if el.get("deleted") and el.get("origin") == site:
                candidates[file_id] = (looked, el)
                continue
            if holds_current(el, site):
                candidates[file_id] = (looked, el)  # modified here
                continue
            synced = el.get(f"synced_{site}")
            locally_changed = synced is None or looked[1] * 1000 > synced
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
        for file_id, (looked, el) in candidates.items():
            if same_look(self.previous.get(file_id), looked) or looked[1] < look_time - self.settle:
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
        parent = file_id.rstrip("/").rsplit("/", 1)[0] + "/"
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
        extra = {"file_count": counts[file_id]} if file_id in counts else {}
        if el is None:
            changes.publish.append(
                {
                    "_id": file_id,
                    "origin": site,
                    "comment": f"scanned at {site}",
                    "file_size": looked[0],
                    "file_mtime": looked[1],
                    # the baseline a later local change is compared with (see conflicts)
                    f"synced_{site}": now,
                    **extra,
                }
            )
            return
        patch = {
            "_id": file_id,
            "file_size": looked[0],
            "file_mtime": looked[1],
            "time": now,
            f"modified_{site}": now,
            f"synced_{site}": now,
            "comment": f"modified at {site}",
            **extra,
        }
        if el.get("deleted"):
            patch.update(deleted=None, deleted_time=None)
        if el.get(f"syncWait_{site}") is not None:
            patch[f"syncWait_{site}"] = None
        if el.get(f"syncError_{site}") is not None:
            patch[f"syncError_{site}"] = None
        changes.update.append(patch)


__all__ = [
    "CONFLICT_MARK",
    "Rules",
    "ScanChanges",
    "Scanner",
    "element_look",
    "holds_current",
    "look_at",
    "same_look",
    "walk",
    "writer_of",
]
