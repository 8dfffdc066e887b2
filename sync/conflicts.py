"""Conflicts: a file changed at two sites since their last sync, both copies kept.

A conflict is recorded on the file element as ``conflict_<site>``:
``{"time", "from", "incoming", "local_size", "local_mtime"}`` where ``incoming`` is
the id under which the other site's copy was saved next to the local one (``None``
until it is fetched). While it is set, that site neither overwrites its copy nor
publishes it as a new version. :func:`resolve` ends it, on the site's machine.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> conflicts(t)
[]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from damas_core.errors import BadRequest, NotFound

from .site import LocalSite, Refused, Site
from .ssh_site import SshSite
from .state import site_keys
from .tracker_api import TrackerAPI
from .volumes import local_root, tracked_files, volumes


def conflicts(tracker: TrackerAPI) -> list[dict[str, Any]]:
    """Every recorded conflict as ``{"_id", "site", **details}``, sorted by id then site."""
    out = []
    for file_id, el in sorted(tracked_files(tracker).items()):
        for key, value in el.items():
            if key.startswith("conflict_") and isinstance(value, dict):
                out.append({"_id": file_id, "site": key[9:], **value})
    return out


def resolve(
    tracker: TrackerAPI,
    file_id: str,
    site: str,
    keep: Literal["local", "incoming"],
    *,
    root: str | None = None,
    storage: Site | None = None,
    ssh_command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """End the conflict of ``file_id`` at ``site``, keeping one copy; returns the element.

    ``keep="incoming"`` moves the incoming copy over the local one (the site then
    holds the current version); ``keep="local"`` removes the incoming copy and makes
    the local copy the next version (the site's next scan publishes it).
    ``root`` is the site's directory (default: its volume url's path; a storage
    driven by a hub is reached over ssh, with ``ssh_command``, as its agent at the hub
    reaches it); ``storage`` the :class:`.site.Site` of its files, for a caller that
    reaches them its own way.
    Both copies' ids pass the site's guard first (:class:`.site.Refused`, nothing
    written, nothing touched). ``tracker`` may
    be a user's session: the element is written first, so a write the session may not
    make (``Forbidden``) leaves both copies as they were; a file operation that fails
    after it puts the element back as it was and raises the ``OSError``.
    """
    if keep not in ("local", "incoming"):
        raise BadRequest(f"sync error: keep is 'local' or 'incoming', not {keep!r}", key="keep")
    el = tracker.read(file_id)
    keys = site_keys(site)
    if el is None or not el.get(keys.conflict):
        raise NotFound(f"sync error: no conflict on {file_id!r} at {site!r}", id=file_id)
    vol = next((v for v in volumes(tracker) if v["name"] == site), None)
    if vol is None:
        raise NotFound(f"sync error: no volume named {site!r}")
    storage = storage or _site(vol, root, ssh_command)
    info = el[keys.conflict]
    incoming = info.get("incoming")
    # the site's guard on both ids, before anything is written or touched
    for named in (file_id, incoming) if incoming else (file_id,):
        reason = storage.refusal(named)
        if reason is not None:
            raise Refused(reason, id=named)
    patch: dict[str, Any] = {"_id": file_id, keys.conflict: None}
    if keep == "incoming":
        if not incoming or not storage.exists(incoming):
            raise NotFound(f"sync error: the incoming copy of {file_id!r} is not at {site!r} yet")
        patch[keys.synced] = None  # the next scan sees the copy matches and marks it
    else:
        # the local copy becomes the base of a local change: the next scan publishes it
        patch[keys.synced] = el.get("time") or 0
        patch[keys.modified] = None
    # the write decides (who may make it is the tracker's rule): no file is touched before
    updated = tracker.update(patch)
    try:
        if keep == "incoming":
            assert incoming is not None
            storage.replace(incoming, file_id)
        elif incoming:
            storage.remove(incoming)
    except OSError:
        # the element points at the copies again, as they are on disk
        tracker.update({"_id": file_id, **{k: el.get(k) for k in patch if k != "_id"}})
        raise
    return updated


def _site(vol: Mapping[str, Any], root: str | None, ssh_command: Sequence[str] | None) -> Site:
    """The files of ``vol`` from this machine: its folder here (``root``, default its
    url's path), or, for a storage driven by a hub, the storage over ssh (what it
    allows found by a probe; :class:`BadRequest` when it cannot be reached)."""
    if root is None and vol.get("hub"):
        site = SshSite(vol, ssh_command=ssh_command)
        problem, _ = site.presence(vol)
        if problem is not None:
            raise BadRequest(f"sync error: the storage {problem}", id=vol.get("_id"))
        return site
    return LocalSite(root or local_root(vol))


__all__ = ["conflicts", "resolve"]
