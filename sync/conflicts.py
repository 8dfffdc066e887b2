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
from typing import Any, Literal

from damas_core.errors import BadRequest, NotFound

from .rsync import inside_root
from .volumes import local_root, tracked_files, volumes


def conflicts(tracker: Any) -> list[dict[str, Any]]:
    """Every recorded conflict as ``{"_id", "site", **details}``, sorted by id then site."""
    out = []
    for file_id, el in sorted(tracked_files(tracker).items()):
        for key, value in el.items():
            if key.startswith("conflict_") and isinstance(value, dict):
                out.append({"_id": file_id, "site": key[9:], **value})
    return out


def resolve(
    tracker: Any,
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
    ``root`` is the site's directory (default: its volume url's path).
    """
    if keep not in ("local", "incoming"):
        raise BadRequest(f"sync error: keep is 'local' or 'incoming', not {keep!r}", key="keep")
    el = tracker.read(file_id)
    if el is None or not el.get(f"conflict_{site}"):
        raise NotFound(f"sync error: no conflict on {file_id!r} at {site!r}", id=file_id)
    vol = next((v for v in volumes(tracker) if v["name"] == site), None)
    if vol is None:
        raise NotFound(f"sync error: no volume named {site!r}")
    root = root or local_root(vol)
    info = el[f"conflict_{site}"]
    incoming = info.get("incoming")
    target = os.path.join(root, file_id.lstrip("/").rstrip("/"))
    if incoming and not inside_root(root, incoming):
        raise BadRequest(f"sync error: unsafe incoming path {incoming!r}")
    source = os.path.join(root, incoming.lstrip("/").rstrip("/")) if incoming else None
    patch: dict[str, Any] = {"_id": file_id, f"conflict_{site}": None}
    if keep == "incoming":
        if not source or not os.path.lexists(source):
            raise NotFound(f"sync error: the incoming copy of {file_id!r} is not at {site!r} yet")
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(source, target)
        patch[f"synced_{site}"] = None  # the next scan sees the copy matches and marks it
    else:
        if source and os.path.lexists(source):
            if os.path.isdir(source) and not os.path.islink(source):
                shutil.rmtree(source)
            else:
                os.unlink(source)
        # the local copy becomes the base of a local change: the next scan publishes it
        patch[f"synced_{site}"] = el.get("time") or 0
        patch[f"modified_{site}"] = None
    return tracker.update(patch)


__all__ = ["conflicts", "resolve"]
