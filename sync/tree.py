"""The filesystem side of a scan: walk a volume's tree once, with the volume's rules.

:func:`walk` reads the tree with ``os.scandir`` through a descriptor per folder (one
``stat`` per file, looked up by name; no symlink followed) and applies the volume's
rules; :func:`look_at` looks at one file again. :mod:`.scanner` compares what they
see with the tracker.

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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _walk_package(
    path: str,
    folder: str,
    rules: Rules,
    out: dict[str, Look],
    counts: dict[str, int] | None,
    stack: list[tuple[str, str]],
) -> None:
    """Add the package ``folder`` (at ``path``) to ``out`` and its subfolders to ``stack``."""
    check_rules = bool(rules.include or rules.exclude or rules.excluded)
    looked = package_look(path)
    if looked is not None and (not check_rules or rules.wants(folder)):
        out[folder] = looked[0]
        if counts is not None:
            counts[folder] = looked[1]
    # its subfolders are ordinary folders
    with os.scandir(path) as sub:
        for s in sub:
            if not _skipped_name(s.name) and s.is_dir(follow_symlinks=False):
                sub_id = folder + s.name + "/"
                if not check_rules or rules.enters(sub_id):
                    stack.append((sub_id, f"{path}/{s.name}/"))


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
    # paths end with "/"; the root may be a symlink, the folders below it are not followed
    stack: list[tuple[str, str]] = [("/", root if root.endswith("/") else root + "/")]
    while stack:
        prefix, path = stack.pop()
        try:
            # listed through a descriptor, each stat looks up one name instead of the
            # whole path; O_NOFOLLOW: a folder swapped for a symlink is not entered
            fd = os.open(path, _DIR_FLAGS if prefix == "/" else _DIR_FLAGS | os.O_NOFOLLOW)
        except OSError as e:
            if errors is not None:
                errors.append(f"{prefix}: {e.strerror or e}")
            continue
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    name = entry.name
                    # most names need none of _skipped_name's tests: only those that may match
                    if (
                        name[0] == "." or "conflict-" in name or not name.isascii()
                    ) and _skipped_name(name):
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            file_id = prefix + name
                            if check_rules and not rules.wants(file_id):
                                continue
                            st = entry.stat(follow_symlinks=False)
                            out[file_id] = (st.st_size, st.st_mtime)
                        elif entry.is_dir(follow_symlinks=False):
                            folder = prefix + name + "/"
                            if check_rules and not rules.enters(folder):
                                continue
                            if rules.discover_packages and rules.is_package(folder):
                                _walk_package(
                                    path + name, folder, rules, out, package_counts, stack
                                )
                            else:
                                stack.append((folder, path + name + "/"))
                    except OSError as e:
                        if errors is not None:
                            errors.append(f"{prefix}{name}: {e.strerror or e}")
        except OSError as e:
            if errors is not None:
                errors.append(f"{prefix}: {e.strerror or e}")
        finally:
            os.close(fd)
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


def parent_of(file_id: str) -> str:
    """The folder id holding a file or package id.

    >>> parent_of("/a/b.txt"), parent_of("/a/seq/"), parent_of("/c.txt")
    ('/a/', '/a/', '/')
    """
    return file_id.rstrip("/").rsplit("/", 1)[0] + "/"


__all__ = [
    "CONFLICT_MARK",
    "MTIME_TOLERANCE",
    "Look",
    "Rules",
    "look_at",
    "package_look",
    "parent_of",
    "same_look",
    "walk",
]
