"""The filesystem side of a scan: walk a volume's tree once, with the volume's rules.

:func:`walk_parts` reads the tree in parts, with one of two walkers that see the same
tree: GNU find in another process (:mod:`.find`), or ``os.scandir`` through a
descriptor per folder (one ``stat`` per file, looked up by name); no symlink is
followed. The volume's rules are applied to what they list; :func:`walk` is the
whole walk at once; :class:`.site.LocalSite` looks at one file again. :mod:`.scanner`
compares what they see with the tracker.

Rules (all optional, from the volume element):

- ``includePatternRules``: RE2 patterns searched in the file id; when any is given a
  file must match one of them;
- ``excludePatternRules``: RE2 patterns; a file id, or a folder id ending in ``/``
  (the folder is then not entered), that matches one is skipped;
- ``excludedFiles``: exact names (``Thumbs.db``) or ids (``/tmp/x``) skipped;
- ``packagePatternRules``: RE2 patterns on folder ids; with
  ``enableDiscoveryPackages`` a matching folder is a folder package. A folder
  already tracked with an id ending in ``/`` is a package at every site.

Symlinks, sockets and devices are never tracked. The engine's own names
(:data:`RESERVED_NAMES`: rsync's partial directory), rsync's
temporary files (``.name.XXXXXX``) and the renamed copies kept by a conflict
(``name.conflict-<site>-<stamp>.ext``) are skipped.

>>> import tempfile, pathlib
>>> root = tempfile.mkdtemp()
>>> _ = pathlib.Path(root, "a.txt").write_text("hello")
>>> {k: v[0] for k, v in walk(root).items()}
{'/a.txt': 5}
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

import re2

from damas_core.errors import BadRequest
from damas_core.paths import CONTROL_CHARACTERS

from .find import Listing, find_ns, gnu_find
from .rsync import PARTIAL_DIR

log = logging.getLogger(__name__)

# rsync's temporary file names: ".<name>.<6 random characters>"
_RSYNC_TEMP = re.compile(r"^\..+\.[A-Za-z0-9]{6}$")
CONFLICT_MARK = re.compile(r"\.conflict-[a-z0-9_]{3,16}-\d{8}T\d{6}Z")
#: (size, mtime in nanoseconds) of a file, as the filesystem gives it; for a package: the
#: size sum and the latest mtime of its direct files
Look = tuple[int, int]
#: (device, inode number) of a file (``st_dev``, ``st_ino``): which file it is on this
#: machine. A rename keeps it; a copy, even with the same size and mtime, gets another, and
#: an inode number alone may be another filesystem's file.
Inode = tuple[int, int]

#: the one ``int`` of a device number (a listing's bytes or ``st_dev``): the files of a
#: walk share a few devices, so their :data:`Inode` tuples share those ints
_device = functools.cache(int)


def same_look(a: Look | None, b: Look | None) -> bool:
    """True when two looks describe the same content version (or both no file).

    >>> same_look((3, 1_567_529_676_123_456_789), (3, 1_567_529_676_123_456_789))
    True
    >>> same_look((3, 1), None), same_look(None, None)
    (False, True)
    """
    return a == b


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


#: the per-site quarantine of propagated deletions (:mod:`.deletions`)
TRASH_DIR = ".damas-trash"
#: names the engine keeps for itself: never tracked, at any depth
RESERVED_NAMES = (PARTIAL_DIR, TRASH_DIR)


#: a control character: a name holding one is not a canonical file id (never tracked)
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def _skipped_name(name: str) -> bool:
    if name in RESERVED_NAMES or CONFLICT_MARK.search(name):
        return True
    if name[0] == "." and _RSYNC_TEMP.match(name):
        return True
    if _CONTROL.search(name):
        log.warning("skipping a name holding a control character: %r", name)
        return True
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            log.warning("skipping a name that is not valid UTF-8: %r", name)
            return True
    return False


@dataclass
class PackageSum:
    """A package's look added up file by file: the size sum, the latest mtime (ns) and
    the count of its direct files (the folder's own mtime is left out: rsync's partial
    directory touches it). Every walker and every site's look of a package adds its
    files here."""

    size: int = 0
    mtime: int = 0
    count: int = 0

    def add(self, size: int, mtime_ns: int) -> None:
        self.size += size
        self.count += 1
        if mtime_ns > self.mtime:
            self.mtime = mtime_ns

    @property
    def look(self) -> Look:
        return (self.size, self.mtime)


def package_of(files: Iterable[tuple[str, int, int]]) -> tuple[Look, int]:
    """The look and file count of a package whose direct regular files are ``files``
    (name, size, mtime ns), the names a walk skips left out.

    >>> package_of([("1.exr", 2, 5), ("2.exr", 3, 9), (".2.exr.AbC123", 7, 99)])
    ((5, 9), 2)
    """
    total = PackageSum()
    for name, size, mtime in files:
        if not _skipped_name(name):
            total.add(size, mtime)
    return total.look, total.count


def package_look(path: str) -> tuple[Look, int] | None:
    """(size sum, latest mtime in ns) and file count of the files directly inside ``path``."""
    try:
        with os.scandir(path) as it:
            return package_of(
                (e.name, st.st_size, st.st_mtime_ns)
                for e in it
                if e.is_file(follow_symlinks=False)
                for st in (e.stat(follow_symlinks=False),)
            )
    except OSError:
        return None


@dataclass
class Seen:
    """What a walk saw besides the looks.

    ``errors``: messages ``<id>: <reason>``; ``unread``: the ids (no trailing ``/``;
    the root is ``/``) of the folders or files that could not be read, so that nothing
    under them is taken for deleted; ``counts``: the files directly inside each package;
    ``inodes``: the :data:`Inode` (device and inode number) of each file and package
    (its folder's) the walk kept, so that a rename (the same inode, another id) is told
    from a copy.
    """

    errors: list[str] = field(default_factory=list)
    unread: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    inodes: dict[str, Inode] = field(default_factory=dict)

    def failed(self, file_id: str, reason: str) -> None:
        self.errors.append(f"{file_id}: {reason}")
        self.unread.add(file_id.rstrip("/") or "/")

    def covers(self, file_id: str) -> bool:
        """True when ``file_id`` is, or is under, something the walk could not read."""
        unread = self.unread
        if not unread:
            return False
        if "/" in unread:
            return True
        path = file_id.rstrip("/")
        while path:
            if path in unread:
                return True
            path = path.rpartition("/")[0]
        return False


#: the walkers :func:`walk_parts` knows: GNU find beside the scan, or os.scandir in it
WALKERS = ("find", "scandir")
#: a scandir walk hands over what it saw after a folder once it holds this many looks
PART = 20000


def walk_parts(
    root: str,
    rules: Rules | None = None,
    seen: Seen | None = None,
    *,
    walker: str = "auto",
    listing: Listing | None = None,
) -> Iterator[dict[str, Look]]:
    """Every tracked-to-be file under ``root`` as ``{id: (size, mtime ns)}``, in parts as
    the walk goes (each id in one part).

    Ids are paths from ``root`` starting with ``/``. A folder package appears once, as
    its id ending in ``/``, with the size sum and the latest mtime of its direct files
    (the folder's own mtime is not used); its subfolders are walked as usual. What
    could not be read is reported in ``seen`` (:class:`Seen`).

    ``walker``: ``"find"`` (GNU find, in another process: see :mod:`.find`),
    ``"scandir"``, or ``"auto"``: find when GNU find is installed. ``listing``: a
    find listing of ``root`` already started (see :func:`start_walk`).
    """
    rules = rules or Rules()
    seen = seen if seen is not None else Seen()
    if listing is not None or check_walker(walker) == "find":
        return _find_parts(listing or Listing(root, prune=RESERVED_NAMES), rules, seen)
    return _scandir_parts(root, rules, seen)


def start_walk(root: str, walker: str = "auto") -> Listing | None:
    """The listing of ``root`` started now when ``walker`` is find (for
    :func:`walk_parts`, once the rules are known), else ``None``: the scandir walk
    needs the rules from its first folder on. Close it (``with``) if it is not walked.
    """
    return Listing(root, prune=RESERVED_NAMES) if check_walker(walker) == "find" else None


def check_walker(walker: str) -> str:
    """The walker ``walker`` names (``auto`` resolved); ``ValueError`` if it names none,
    or names find where GNU find is not installed."""
    if walker == "auto":
        return "find" if gnu_find() else "scandir"
    if walker not in WALKERS:
        raise ValueError(f"walker is one of {', '.join(WALKERS)} or auto, not {walker!r}")
    if walker == "find" and gnu_find() is None:
        raise ValueError("walker 'find' needs GNU find (findutils) on the PATH")
    return walker


def walk(
    root: str, rules: Rules | None = None, seen: Seen | None = None, *, walker: str = "auto"
) -> dict[str, Look]:
    """The whole of :func:`walk_parts` in one dict."""
    out: dict[str, Look] = {}
    for part in walk_parts(root, rules, seen, walker=walker):
        out.update(part)
    return out


def _needs_rules(rules: Rules) -> bool:
    return bool(rules.include or rules.exclude or rules.excluded)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _scandir_parts(root: str, rules: Rules, seen: Seen) -> Iterator[dict[str, Look]]:
    check_rules = _needs_rules(rules)
    packages = rules.discover_packages
    inodes = seen.inodes
    out: dict[str, Look] = {}
    # (folder id, path, whether its direct files are a package's); paths end with "/"
    stack: list[tuple[str, str, bool]] = [("/", os.path.join(root, ""), False)]
    while stack:
        prefix, path, in_package = stack.pop()
        try:
            # listed through a descriptor, each stat looks up one name instead of the
            # whole path; O_NOFOLLOW: a folder swapped for a symlink is not entered (the
            # root may be a symlink)
            fd = os.open(path, _DIR_FLAGS if prefix == "/" else _DIR_FLAGS | os.O_NOFOLLOW)
        except OSError as e:
            seen.failed(prefix, e.strerror or str(e))
            continue
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    name = entry.name
                    # most names need none of _skipped_name's tests: only those that may match
                    if (
                        name[0] == "."
                        or "conflict-" in name
                        or not name.isascii()
                        or not name.isprintable()
                    ) and _skipped_name(name):
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            file_id = prefix + name
                            if in_package or (check_rules and not rules.wants(file_id)):
                                continue
                            st = entry.stat(follow_symlinks=False)
                            out[file_id] = (st.st_size, st.st_mtime_ns)
                            inodes[file_id] = (_device(st.st_dev), st.st_ino)
                        elif entry.is_dir(follow_symlinks=False):
                            folder = prefix + name + "/"
                            if check_rules and not rules.enters(folder):
                                continue
                            is_package = packages and rules.is_package(folder)
                            if is_package:
                                _add_package(path + name, folder, rules, out, seen)
                            stack.append((folder, path + name + "/", is_package))
                    except OSError as e:
                        seen.failed(prefix + name, e.strerror or str(e))
        except OSError as e:
            seen.failed(prefix, e.strerror or str(e))
        finally:
            os.close(fd)
        if len(out) >= PART:
            yield out
            out = {}
    if out:
        yield out


def _add_package(path: str, folder: str, rules: Rules, out: dict[str, Look], seen: Seen) -> None:
    looked = package_look(path)
    # an unreadable package is reported by the walk of the folder itself
    if looked is not None and (not _needs_rules(rules) or rules.wants(folder)):
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return  # gone since: the next walk sees it
        out[folder] = looked[0]
        seen.counts[folder] = looked[1]
        seen.inodes[folder] = (_device(st.st_dev), st.st_ino)


_F = b"f"


def _find_parts(listing: Listing, rules: Rules, seen: Seen) -> Iterator[dict[str, Look]]:
    """The parts of a find listing (local, or a storage's over ssh) kept by the rules.
    A package's look is added up from the listing's entries of its direct files
    (:class:`PackageSum`): it is known once the whole listing is read, and comes in
    the last part, unless the listing could not read it (:meth:`Seen.covers`)."""
    plain = not (_needs_rules(rules) or rules.discover_packages)
    state = _Pruning()
    try:
        for types, sizes, mtimes, devices, inodes, text in listing:
            ids = text.split("\0")
            if not (
                plain
                and text.isascii()
                and "/." not in text
                and "conflict-" not in text
                and not _CONTROL.search(text)
            ):
                yield _filtered(types, sizes, mtimes, devices, inodes, ids, rules, seen, state)
                continue
            # no name to skip, no rule: every file is kept, in bulk
            if types.count(_F) != len(types):
                keep = list(map(_F.__eq__, types))
                ids, sizes, mtimes, devices, inodes = (
                    list(compress(ids, keep)),
                    compress(sizes, keep),
                    compress(mtimes, keep),
                    compress(devices, keep),
                    compress(inodes, keep),
                )
            seen.inodes.update(zip(ids, zip(map(_device, devices), map(int, inodes))))
            yield dict(zip(ids, zip(map(int, sizes), map(find_ns, mtimes))))
    finally:
        listing.close()
        for file_id, reason in listing.failures:
            if file_id is None:
                seen.errors.append(reason)
            else:
                seen.failed(file_id, reason)
        if not listing.complete:  # what was not listed is not known to be gone
            seen.failed("/", f"the listing stopped before its end (find exited {listing.exit})")
    looks: dict[str, Look] = {}
    for folder, total in state.sums.items():
        if not seen.covers(folder):  # an unreadable package is not known to have changed
            looks[folder] = total.look
            seen.counts[folder] = total.count
            seen.inodes[folder] = state.folder_inodes[folder]
    if looks:
        yield looks


@dataclass
class _Pruning:
    prune: str | None = None  # the folder id (ending "/") whose entries are skipped
    packages: set[str] = field(default_factory=set)  # package folders met so far
    sums: dict[str, PackageSum] = field(default_factory=dict)  # those the rules keep
    folder_inodes: dict[str, Inode] = field(default_factory=dict)  # their folders'


def _filtered(
    types: list[bytes],
    sizes: list[bytes],
    mtimes: list[bytes],
    devices: list[bytes],
    inodes: list[bytes],
    ids: list[str],
    rules: Rules,
    seen: Seen,
    state: _Pruning,
) -> dict[str, Look]:
    """The entries of a find listing kept by the rules, one by one: the same choices
    as the scandir walk. find lists a folder's whole subtree right after the folder,
    so the entries of a folder not entered follow it until the first one outside.
    The direct files of a package are added to its :class:`PackageSum`."""
    check_rules = _needs_rules(rules)
    packages, sums = state.packages, state.sums
    prune = state.prune
    out: dict[str, Look] = {}
    for kind, size, mtime, device, inode, file_id in zip(
        types, sizes, mtimes, devices, inodes, ids
    ):
        if prune is not None:
            if file_id.startswith(prune):
                continue
            prune = None
        if file_id == "/":
            continue
        name = file_id.rpartition("/")[2]
        if kind == b"d":
            folder = file_id + "/"
            if _skipped_name(name) or (check_rules and not rules.enters(folder)):
                prune = folder
            elif rules.discover_packages and rules.is_package(folder):
                packages.add(folder)
                if not check_rules or rules.wants(folder):
                    sums[folder] = PackageSum()
                    state.folder_inodes[folder] = (_device(device), int(inode))
            continue
        if kind != _F or _skipped_name(name):
            continue
        if packages:
            parent = parent_of(file_id)
            if parent in packages:  # a package's own file: the package's look covers it
                total = sums.get(parent)
                if total is not None:
                    total.add(int(size), find_ns(mtime))
                continue
        if check_rules and not rules.wants(file_id):
            continue
        out[file_id] = (int(size), find_ns(mtime))
        seen.inodes[file_id] = (_device(device), int(inode))
    state.prune = prune
    return out


def parent_of(file_id: str) -> str:
    """The folder id holding a file or package id.

    >>> parent_of("/a/b.txt"), parent_of("/a/seq/"), parent_of("/c.txt")
    ('/a/', '/a/', '/')
    """
    return file_id.rstrip("/").rsplit("/", 1)[0] + "/"


__all__ = [
    "CONFLICT_MARK",
    "RESERVED_NAMES",
    "TRASH_DIR",
    "WALKERS",
    "Inode",
    "Look",
    "PackageSum",
    "Rules",
    "Seen",
    "check_walker",
    "package_look",
    "package_of",
    "parent_of",
    "same_look",
    "start_walk",
    "walk",
    "walk_parts",
]
