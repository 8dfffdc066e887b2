"""The site seam: the one place that touches a volume's files.

A :class:`Site` is one volume's storage as the engine sees it: it lists the files
(with the volume's rules), looks at one, checks a copy, moves, quarantines, removes,
keeps both copies of a conflict, replaces one copy by another, measures its capacity
and says whether it is there at all. The agent, the scanner, the deletions and the
conflicts ask a site; none of them joins a root and an id by itself.

Every effect passes through **one guard** (:meth:`Site.path_of` for a local site):

- the id must be a canonical file id (:func:`id_refusal`): it starts with ``/``, has
  no ``.``, ``..`` or empty segment, no NUL or control character, no name longer than
  255 bytes and no path longer than 4096; an id that is not is never acted on;
- the folders on the way are resolved (symlinks included) and must stay under the
  volume root: a symlinked folder inside the volume that points out is refused;
- the last component is never followed: a symlink there is moved or removed as the
  link itself, and never transferred.

What the guard refuses raises :class:`Refused` (a :class:`BadRequest` naming the id
and the reason); nothing is touched. A site that is not on this machine (the hub's
ssh storages) implements the same contract; ``tests/sync/test_site_contract.py`` holds
every implementation to it.

>>> import tempfile, pathlib
>>> root = tempfile.mkdtemp()
>>> _ = pathlib.Path(root, "a.txt").write_text("hi")
>>> site = LocalSite(root)
>>> site.look("/a.txt")[0]
2
>>> site.move("/a.txt", "/b/c.txt"), sorted(site.walk())
(True, ['/b/c.txt'])
>>> site.refusal("/../etc/passwd")
"sync error: unsafe path '/../etc/passwd' (it has a '..' segment)"
"""

from __future__ import annotations

import abc
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import date, timedelta
from typing import Any

from damas_core.errors import BadRequest
from damas_core.paths import path_fault

from .rsync import PARTIAL_DIR, Endpoint
from .state import look_matches
from .tree import (
    TRASH_DIR,
    Look,
    Rules,
    Seen,
    check_walker,
    package_look,
    start_walk,
    walk_parts,
)
from .volumes import endpoint_of

#: the longest name and path the guard lets through (bytes, as most filesystems allow)
NAME_MAX = 255
PATH_MAX = 4096

#: nanoseconds in a listing's time unit: what :attr:`Site.precision_ns` may be
NANOSECOND, MILLISECOND, SECOND = 1, 1_000_000, 1_000_000_000


class Refused(BadRequest):
    """An id the seam will not act on (outside the volume, not canonical): nothing
    was touched. The message names the id and why."""


def id_refusal(file_id: object) -> str | None:
    """Why ``file_id`` is not a canonical file id an agent may act on, or ``None``.

    The id must be a canonical file path, by the tracker's own rule
    (:func:`damas_core.paths.path_fault`: it starts with ``/``, a package id ends
    with ``/``, no segment is empty, ``.`` or ``..``, no NUL or control character),
    and no name may be longer than :data:`NAME_MAX` bytes (the whole id:
    :data:`PATH_MAX`).

    >>> id_refusal("/shots/a b.exr") is None, id_refusal("/seq/") is None
    (True, True)
    >>> id_refusal("/a/../b")
    "sync error: unsafe path '/a/../b' (it has a '..' segment)"
    >>> id_refusal("/a\\nb")
    "sync error: unsafe path '/a\\\\nb' (it holds the control character U+000A)"
    """
    fault = path_fault(file_id)
    if fault is not None:
        shown = file_id[:64] if isinstance(file_id, str) else file_id
        return f"sync error: unsafe path {shown!r} ({fault})"
    body = file_id[1:-1] if file_id.endswith("/") else file_id[1:]
    if len(file_id.encode("utf-8", "surrogateescape")) > PATH_MAX:
        return f"sync error: unsafe path {file_id[:64]!r}... (longer than {PATH_MAX} bytes)"
    for part in body.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            return (
                f"sync error: unsafe path {file_id[:64]!r}... (a name longer than {NAME_MAX} bytes)"
            )
    return None


def checked_id(file_id: str) -> str:
    """``file_id`` when it is canonical (:func:`id_refusal`), else :class:`Refused`."""
    reason = id_refusal(file_id)
    if reason is not None:
        raise Refused(reason, id=file_id if isinstance(file_id, str) else None)
    return file_id


def trash_id(file_id: str, day: date) -> str:
    """The id under which the quarantine keeps the copy of ``file_id`` removed ``day``.

    >>> trash_id("/shots/a.exr", date(2026, 12, 1)), trash_id("/seq/", date(2026, 12, 1))
    ('/.damas-trash/2026-12-01/shots/a.exr', '/.damas-trash/2026-12-01/seq')
    """
    return f"/{TRASH_DIR}/{day.isoformat()}/{file_id.strip('/')}"


class Site(abc.ABC):
    """One volume's files, wherever they are. Every method that names a file takes a
    file id (``/path``, ``/package/``) and applies the seam's guard first: an id that is
    not canonical or that resolves outside the volume raises :class:`Refused` before
    anything is touched (the look-only methods answer ``None`` instead).

    ``root`` is the volume's root as the site names it (ends with ``/``);
    ``precision_ns`` the precision of the mtimes its listing and looks give, in
    nanoseconds (1: to the nanosecond; :data:`SECOND` for a listing in whole seconds).
    """

    root: str
    precision_ns: int = NANOSECOND

    # -- the guard -------------------------------------------------------------------------

    @abc.abstractmethod
    def refusal(self, file_id: str) -> str | None:
        """Why the engine may not act on ``file_id`` at this site (not canonical, a
        folder on its way that leaves the root, a symlink at its end), or ``None``.
        Never raises, never touches a file."""

    def files_from(self, ids: Iterable[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The ids rsync may copy to or from this site, each with the path relative to
        the root that rsync's ``--files-from`` list names it by (a package keeps its
        trailing ``/``), and the refused ones with the reason.

        >>> import tempfile
        >>> LocalSite(tempfile.mkdtemp()).files_from(["/a b", "/x/../y"])
        ([('/a b', 'a b')], {'/x/../y': "sync error: unsafe path '/x/../y' (it has a '..' segment)"})
        """
        kept, refused = [], {}
        for file_id in ids:
            reason = self.refusal(file_id)
            if reason is None:
                kept.append((file_id, file_id[1:]))
            else:
                refused[file_id] = reason
        return kept, refused

    @abc.abstractmethod
    def endpoint(self) -> Endpoint:
        """The rsync side of this site's root (a local directory or ``user@host:path``)."""

    # -- is it there -----------------------------------------------------------------------

    @abc.abstractmethod
    def presence(self, volume: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """Why the volume looks absent or unreachable now (``None`` when it is there),
        and the volume keys to record with the next status (for example the device a
        local root is on). ``volume`` is the volume element as the tracker holds it.
        A volume that is absent is neither scanned, nor written, nor emptied."""

    @abc.abstractmethod
    def capacity(self) -> dict[str, int] | None:
        """``{"bytesTotal", "bytesUsed", "bytesRemaining"}`` of the storage holding the
        root, or ``None`` when the site cannot tell."""

    # -- listing and looks -----------------------------------------------------------------

    #: whether a scan looks again at a growing file after ``settle`` (one look per
    #: file: a site where a look costs a round trip waits for its next scan instead)
    looks_again: bool = True

    def scan_rules(self, volume: Mapping[str, Any], packages: Iterable[str]) -> Rules:
        """The rules a scan of this site walks with: the volume's include/exclude rules
        and the tracked ``packages`` (folders travelling as one)."""
        return Rules.from_volume(volume, packages)

    def start_listing(self) -> AbstractContextManager[Any]:
        """A listing begun before the volume's rules are read (handed to :meth:`walk`
        as ``started``), as a context manager; by default nothing is begun."""
        return nullcontext()

    @abc.abstractmethod
    def walk_parts(
        self, rules: Rules | None = None, seen: Seen | None = None, *, started: Any = None
    ) -> Iterator[dict[str, Look]]:
        """Every file and package under the root the rules keep, as ``{id: (size, mtime
        ns)}`` in parts as the listing goes (each id in one part). Symlinks, devices and
        the engine's reserved names are never listed; ids that are not canonical are
        left out. What could not be read is reported in ``seen``: nothing under it is
        taken for deleted. mtimes are exact to :attr:`precision_ns`."""

    def walk(self, rules: Rules | None = None, seen: Seen | None = None) -> dict[str, Look]:
        """The whole of :meth:`walk_parts` in one dict."""
        out: dict[str, Look] = {}
        for part in self.walk_parts(rules, seen):
            out.update(part)
        return out

    def set_mtime(self, file_id: str, mtime_ns: int) -> None:
        """Give the regular file ``file_id`` the mtime ``mtime_ns`` (a copy taking the
        time its element records, so that no precision difference is ever a change);
        for a package, its direct files later than ``mtime_ns`` take it (its look's
        mtime is then ``mtime_ns``). :class:`Refused` for an id the guard refuses or a
        site that cannot."""
        raise Refused(f"sync error: {file_id!r}: this site sets no mtimes", id=file_id)

    @abc.abstractmethod
    def look(self, file_id: str) -> Look | None:
        """The (size, mtime ns) of the regular file or package ``file_id``; ``None`` when
        there is none (or it is a symlink, a device, a folder that is not asked for as
        a package). Raises :class:`Refused` for an id the guard refuses."""

    def looks(self, ids: Iterable[str]) -> dict[str, Look | None]:
        """:meth:`look` of each of ``ids`` (the copies one rsync call made, checked
        after it), each folder on the way resolved once."""
        return {i: self.look(i) for i in ids}

    @abc.abstractmethod
    def exists(self, file_id: str) -> bool:
        """True when anything is at ``file_id`` (a file, a folder, a symlink: not
        followed). Raises :class:`Refused` for an id the guard refuses."""

    def check(self, file_id: str, element: Mapping[str, Any]) -> bool:
        """True when the copy of ``file_id`` here is the version ``element`` records
        (size, and mtime at the coarser of this site's and the element's precisions)."""
        return look_matches(self.look(file_id), element, self.precision_ns)

    # -- effects ---------------------------------------------------------------------------

    @abc.abstractmethod
    def move(self, old_id: str, new_id: str) -> bool:
        """Move the file or package ``old_id`` to ``new_id`` (folders made as needed);
        ``False``, with nothing moved, when ``old_id`` is gone or something is already
        at ``new_id``. Both ids pass the guard; the last component of ``old_id`` is
        moved as it is (a symlink as the link)."""

    @abc.abstractmethod
    def quarantine(self, file_id: str, day: date, now: int) -> str:
        """Move ``file_id`` into the quarantine (:func:`trash_id` of ``day``; when the
        same path went there earlier that day, with ``.<now>`` added); returns the id it
        is kept under. Raises ``FileNotFoundError`` when it is gone."""

    @abc.abstractmethod
    def remove(self, file_id: str) -> bool:
        """Remove the file or package folder ``file_id``; ``False`` when nothing was there.
        A symlink is removed as the link, never followed."""

    @abc.abstractmethod
    def purge(self, retention_days: float, today: date) -> list[str]:
        """Remove the quarantine's day folders older than ``retention_days``; returns
        their names. Names that are not dates are left alone."""

    @abc.abstractmethod
    def keep_both(
        self, file_id: str, incoming_id: str, fetch: Callable[[Endpoint, str], bool]
    ) -> bool:
        """Keep the other site's copy of ``file_id`` beside ours, as ``incoming_id``:
        ``fetch(endpoint, relpath)`` copies it into a staging folder of the site (the
        engine's reserved folder) and says whether it succeeded; the copy is then moved
        to ``incoming_id``. ``False`` when nothing was fetched. Both ids pass the guard
        before anything is fetched; the staging folder is removed in every case."""

    @abc.abstractmethod
    def replace(self, source_id: str, target_id: str) -> None:
        """Move ``source_id`` over ``target_id`` (a conflict resolved for the incoming
        copy). A package folder at ``target_id`` is moved aside first and put back if
        the move fails: a failure leaves the local copy in place and raises ``OSError``.
        ``FileNotFoundError`` when ``source_id`` is gone."""


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


class LocalSite(Site):
    """A volume whose files are on this machine, under ``root``.

    ``walker``: how it is listed (``"find"``: GNU find in another process, so that the
    tracker's writes overlap the listing; ``"scandir"``; ``"auto"``: find when GNU find
    is installed; see :func:`.tree.walk_parts`). ``precision_ns``: the precision of the
    mtimes the filesystem keeps, when coarser than what ``stat`` shows (a FAT or
    sshfs mount keeps whole seconds or two).

    >>> import tempfile
    >>> LocalSite(tempfile.mkdtemp()).capacity()["bytesTotal"] > 0
    True
    """

    precision_ns = NANOSECOND

    def __init__(self, root: str, *, walker: str = "auto", precision_ns: int = NANOSECOND) -> None:
        self.root = os.path.join(os.path.abspath(root), "")
        check_walker(walker)
        self.walker = walker
        self.precision_ns = precision_ns

    # -- the guard -------------------------------------------------------------------------

    def set_mtime(self, file_id: str, mtime_ns: int) -> None:
        path = self.path_of(file_id)
        mode = os.lstat(path).st_mode
        if file_id.endswith("/") and stat.S_ISDIR(mode):
            with os.scandir(path) as it:
                later = [
                    e.path
                    for e in it
                    if e.is_file(follow_symlinks=False)
                    and e.stat(follow_symlinks=False).st_mtime_ns > mtime_ns
                ]
            for later_path in later:
                os.utime(later_path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
            return
        if not stat.S_ISREG(mode):
            raise Refused(f"sync error: {file_id!r} is not a regular file", id=file_id)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def path_of(self, file_id: str, folders: dict[str, str] | None = None) -> str:
        """The guard: the absolute path of ``file_id`` with every folder on its way
        resolved, or :class:`Refused` (not canonical, or a folder on the way resolves
        outside the root). The last component is not resolved: what is there is acted
        on as itself. No other function of the engine turns an id into a path.
        ``folders``: the folders resolved so far in one batch of looks (:meth:`looks`)."""
        checked_id(file_id)
        rel = file_id[1:].rstrip("/")
        folder, _, name = rel.rpartition("/")
        real = folders.get(folder) if folders is not None else None
        if real is None:
            real_root = os.path.realpath(self.root)
            real = os.path.realpath(os.path.join(real_root, folder)) if folder else real_root
            if not _inside(real, real_root):
                raise Refused(
                    f"sync error: {file_id!r} leaves the volume root {self.root!r}", id=file_id
                )
            if folders is not None:
                folders[folder] = real
        return os.path.join(real, name)

    def _target(self, file_id: str) -> str:
        """:meth:`path_of`, refusing a symlink at the end too: the engine never tracks
        one, so it never has a reason to move, remove or replace one."""
        path = self.path_of(file_id)
        if os.path.islink(path):
            raise Refused(f"sync error: {file_id!r} is a symlink", id=file_id)
        return path

    def refusal(self, file_id: str) -> str | None:
        try:
            self._target(file_id)
        except Refused as e:
            return str(e)
        return None

    def files_from(self, ids: Iterable[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
        kept, refused = [], {}
        real_root = os.path.realpath(self.root)
        folders: dict[str, bool] = {}  # each folder resolved once per batch
        for file_id in ids:
            reason = id_refusal(file_id)
            if reason is None:
                rel = file_id[1:].rstrip("/")
                folder = rel.rpartition("/")[0]
                inside = folders.get(folder)
                if inside is None:
                    real = os.path.realpath(os.path.join(real_root, folder))
                    inside = folders[folder] = _inside(real, real_root)
                if not inside:
                    reason = f"sync error: {file_id!r} leaves the volume root {self.root!r}"
                elif os.path.islink(os.path.join(real_root, rel)):
                    reason = f"sync error: {file_id!r} is a symlink"
            if reason is None:
                kept.append((file_id, file_id[1:]))
            else:
                refused[file_id] = reason
        return kept, refused

    def endpoint(self) -> Endpoint:
        return Endpoint(self.root)

    # -- is it there -----------------------------------------------------------------------

    def presence(self, volume: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """An unmounted share leaves an empty folder (its mount point), or none:
        scanning it would take every file for deleted, and receiving into it would fill
        the disk under it. A mount point is on another device than the share mounted on
        it, so the volume records the device of its root (``rootDevice``). The volume
        is absent when its root cannot be read, or is empty and on another device than
        the one recorded. An empty root on the same device is a volume whose files were
        deleted; a root holding files on a new device is the share mounted again."""
        root = self.root
        try:
            device = os.stat(root).st_dev
            with os.scandir(root) as it:
                empty = next(it, None) is None
        except OSError as e:
            return f"the volume root {root} cannot be read ({e.strerror or e}): not mounted?", {}
        known = volume.get("rootDevice")
        if known == device:
            return None, {}
        if empty and known is not None:
            return (
                f"the volume root {root} is empty and on another device ({device}) than at "
                f"the last cycle ({known}): not mounted? If it really is empty now, set "
                f"rootDevice to null on {volume.get('_id')!r}: the next cycle records the "
                f"files as deleted"
            ), {}
        return None, {"rootDevice": device}

    def capacity(self) -> dict[str, int] | None:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return None
        unit = st.f_frsize or st.f_bsize
        return {
            "bytesTotal": st.f_blocks * unit,
            "bytesUsed": (st.f_blocks - st.f_bfree) * unit,
            "bytesRemaining": st.f_bavail * unit,
        }

    # -- listing and looks -----------------------------------------------------------------

    def start_listing(self) -> AbstractContextManager[Any]:
        return start_walk(self.root, self.walker) or nullcontext()

    def walk_parts(
        self, rules: Rules | None = None, seen: Seen | None = None, *, started: Any = None
    ) -> Iterator[dict[str, Look]]:
        return walk_parts(self.root, rules, seen, walker=self.walker, listing=started)

    def look(self, file_id: str) -> Look | None:
        return self._look(file_id, self.path_of(file_id))

    def looks(self, ids: Iterable[str]) -> dict[str, Look | None]:
        folders: dict[str, str] = {}
        return {i: self._look(i, self.path_of(i, folders)) for i in ids}

    @staticmethod
    def _look(file_id: str, path: str) -> Look | None:
        if file_id.endswith("/"):
            if os.path.islink(path):
                return None
            looked = package_look(path)
            return None if looked is None else looked[0]
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return (st.st_size, st.st_mtime_ns)

    def exists(self, file_id: str) -> bool:
        return os.path.lexists(self.path_of(file_id))

    # -- effects ---------------------------------------------------------------------------

    def move(self, old_id: str, new_id: str) -> bool:
        source, target = self._target(old_id), self._target(new_id)
        if not os.path.lexists(source) or os.path.lexists(target):
            return False
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # the folders made may not be where path_of resolved them (a race): look again
        if self._target(new_id) != target:
            raise Refused(f"sync error: {new_id!r} changed while it was moved to", id=new_id)
        os.replace(source, target)
        return True

    def quarantine(self, file_id: str, day: date, now: int) -> str:
        source = self._target(file_id)
        if not os.path.lexists(source):
            raise FileNotFoundError(source)
        kept = trash_id(file_id, day)
        target = self._target(kept)
        if os.path.lexists(target):  # the same path trashed twice in a day: keep both
            kept = f"{kept}.{now}"
            target = self._target(kept)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)
        return kept

    def remove(self, file_id: str) -> bool:
        path = self._target(file_id)
        if not os.path.lexists(path):
            return False
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return True

    def purge(self, retention_days: float, today: date) -> list[str]:
        trash = self.path_of(f"/{TRASH_DIR}")
        if os.path.islink(trash):
            return []
        try:
            names = sorted(os.listdir(trash))
        except OSError:
            return []
        oldest = today - timedelta(days=retention_days)
        gone = []
        for name in names:
            try:
                day = date.fromisoformat(name)
            except ValueError:
                continue
            if day < oldest:
                path = os.path.join(trash, name)
                if os.path.islink(path):
                    os.unlink(path)  # a link is removed, never followed
                else:
                    shutil.rmtree(path, ignore_errors=True)
                gone.append(name)
        return gone

    def _staging(self, prefix: str) -> str:
        """A new folder in the engine's reserved folder (walks never list it)."""
        partial = self.path_of(f"/{PARTIAL_DIR}")
        if os.path.islink(partial):
            raise Refused(f"sync error: {PARTIAL_DIR} at {self.root!r} is a symlink")
        os.makedirs(partial, exist_ok=True)
        return tempfile.mkdtemp(prefix=prefix, dir=partial)

    def keep_both(
        self, file_id: str, incoming_id: str, fetch: Callable[[Endpoint, str], bool]
    ) -> bool:
        self._target(file_id)
        self._target(incoming_id)
        staging = self._staging("conflict-")
        try:
            rel = file_id[1:]
            if not fetch(Endpoint(os.path.join(staging, "")), rel):
                return False
            fetched = os.path.join(staging, rel.rstrip("/"))
            if not os.path.lexists(fetched) or os.path.islink(fetched):
                return False
            target = self._target(incoming_id)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(fetched, target)
            return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def replace(self, source_id: str, target_id: str) -> None:
        source, target = self._target(source_id), self._target(target_id)
        if not os.path.lexists(source):
            raise FileNotFoundError(source)
        if not (os.path.isdir(target) and not os.path.islink(target)):
            os.replace(source, target)
            return
        aside = self._staging("resolve-")
        kept = os.path.join(aside, "local")
        os.replace(target, kept)
        try:
            os.replace(source, target)
        except OSError:
            os.replace(kept, target)
            os.rmdir(aside)
            raise
        shutil.rmtree(aside)


#: host names an ``ssh://`` url may give for this machine
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def this_machine(host: str) -> bool:
    """True when ``host`` (an ``ssh://`` url's host) names this machine: a loopback
    address, ``localhost``, or this machine's host name (short or fully qualified).
    No name is looked up: a name this machine does not call itself is another one.

    >>> this_machine("localhost"), this_machine(socket.gethostname()), this_machine("nas.example")
    (True, True, False)
    """
    host = host.lower()
    if host in _LOOPBACK or host.startswith("127."):
        return True
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    names.update(n.split(".", 1)[0] for n in list(names))
    return host in names


def local_site(
    volume: Mapping[str, Any], *, root: str | None = None, walker: str = "auto"
) -> LocalSite:
    """The site of ``volume`` for an agent on this machine: its url's path, or ``root``
    (the folder where its files are mounted here). Refused (:class:`BadRequest`
    naming the volume and what to do): a storage driven by a hub (its ``hub`` key: the
    hub's agent reaches it over ssh), and, without ``root``, an ``ssh://`` volume whose
    host is not this machine (its files are not here).

    >>> local_site({"_id": "v", "url": "ssh://me@nas.example/p/"}, root="/mnt/p").root
    '/mnt/p/'
    >>> local_site({"_id": "v", "url": "ssh://me@nas.example/p/"})
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: sync error: volume 'v' is ssh://me@nas.example/p/: its files are on nas.example, not on this machine; run its agent there, give the folder where they are mounted here (--root DIR), or let a hub drive it (a 'hub' key and damas hub run)
    """
    vid = volume.get("_id")
    if volume.get("hub"):
        raise BadRequest(
            f"sync error: volume {vid!r} is a storage driven by the hub {volume['hub']!r}: "
            f"its agent runs at the hub (damas hub run {volume['hub']}), not here",
            id=vid,
            key="hub",
        )
    if root is None:
        endpoint = endpoint_of(volume)
        host = (endpoint.host or "").rpartition("@")[2]
        if endpoint.host is not None and not this_machine(host):
            raise BadRequest(
                f"sync error: volume {vid!r} is {volume.get('url')}: its files are on "
                f"{host}, not on this machine; run its agent there, give the folder where "
                f"they are mounted here (--root DIR), or let a hub drive it (a 'hub' key "
                f"and damas hub run)",
                id=vid,
                key="url",
            )
        root = endpoint.root
    return LocalSite(root, walker=walker)


__all__ = [
    "MILLISECOND",
    "NANOSECOND",
    "SECOND",
    "LocalSite",
    "Refused",
    "Site",
    "checked_id",
    "id_refusal",
    "local_site",
    "this_machine",
    "trash_id",
]
