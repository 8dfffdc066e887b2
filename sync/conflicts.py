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

import os
import shutil
import tempfile
from typing import Any, Literal

from damas_core.errors import BadRequest, NotFound

from .rsync import PARTIAL_DIR, inside_root
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
) -> dict[str, Any]:
    """End the conflict of ``file_id`` at ``site``, keeping one copy; returns the element.

    ``keep="incoming"`` moves the incoming copy over the local one (the site then
    holds the current version); ``keep="local"`` removes the incoming copy and makes
    the local copy the next version (the site's next scan publishes it).
    ``root`` is the site's directory (default: its volume url's path). ``tracker`` may
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
    root = root or local_root(vol)
    info = el[keys.conflict]
    incoming = info.get("incoming")
    target = os.path.join(root, file_id.lstrip("/").rstrip("/"))
    if incoming and not inside_root(root, incoming):
        raise BadRequest(f"sync error: unsafe incoming path {incoming!r}")
    source = os.path.join(root, incoming.lstrip("/").rstrip("/")) if incoming else None
    patch: dict[str, Any] = {"_id": file_id, keys.conflict: None}
    if keep == "incoming":
        if not source or not os.path.lexists(source):
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
            assert source is not None
            _replace(source, target, root)
        elif source and os.path.lexists(source):
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.rmtree(source)
            else:
                os.unlink(source)
    except OSError:
        # the element points at the copies again, as they are on disk
        tracker.update({"_id": file_id, **{k: el.get(k) for k in patch if k != "_id"}})
        raise
    return updated


def _replace(source: str, target: str, root: str) -> None:
    """Move ``source`` over ``target``; a folder (package) there is moved aside first
    and back if the move fails, so that a failure leaves the local copy in place."""
    if not (os.path.isdir(target) and not os.path.islink(target)):
        os.replace(source, target)
        return
    aside = tempfile.mkdtemp(prefix="resolve-", dir=_partial_dir(root))
    kept = os.path.join(aside, "local")
    os.replace(target, kept)
    try:
        os.replace(source, target)
    except OSError:
        os.replace(kept, target)
        os.rmdir(aside)
        raise
    shutil.rmtree(aside)


def _partial_dir(root: str) -> str:
    # the engine's reserved folder: walks never list it
    path = os.path.join(root, PARTIAL_DIR)
    os.makedirs(path, exist_ok=True)
    return path


__all__ = ["conflicts", "resolve"]
