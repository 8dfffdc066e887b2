"""Deletions at the origin, applied at the other sites through a quarantine.

With ``propagateDeletions`` on (the site's volume, else ``rsyncGlobalParameters``;
default off: deletions are only recorded), a file recorded ``deleted`` at its origin
is removed at this site when this site holds the deleted version and its copy is
still that version (size and mtime): a copy changed here since is never removed (the
scan publishes it as a new version instead). The copy is moved, not deleted, to
``.damas-trash/<YYYY-MM-DD>/<its path>`` under the site's root, kept
``trashRetention`` days, and the element records where (``trashed_<site>``).

A rename at the origin (recognised by its scan: ``renamed_to`` on the old element) is
applied here as a move of the old copy to the new path, instead of a transfer of the
new file and a deletion of the old one (:func:`to_move`); moves are not deletions,
and do not count for ``maxDelete``.

Brakes: when one cycle would remove more than ``maxDelete`` % (default 50) of the
files this site holds, it removes none and says why; an unmounted volume never gets
this far (the agent's cycle stops first).

>>> el = {"_id": "/a", "origin": "paris", "time": 5, "deleted": True, "synced_tokyo": 5}
>>> to_remove({"/a": el}, "tokyo", {"propagateDeletions": True})
['/a']
>>> to_remove({"/a": el}, "tokyo", {"propagateDeletions": False})
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .record import MOVED, STALE, TRASHED, Outcome
from .site import Site
from .state import look_matches, site_keys
from .volumes import DEFAULTS


def _held(el: Mapping[str, Any], synced_key: str) -> bool:
    synced = el.get(synced_key)
    return isinstance(synced, int | float) and synced >= (el.get("time") or 0)


def to_remove(
    files: Mapping[str, Mapping[str, Any]],
    site: str,
    settings: Mapping[str, Any],
    among: Iterable[str] | None = None,
) -> list[str]:
    """The ids whose copy at ``site`` a propagated deletion removes, sorted: deleted at
    another site (``deleted_at``: the origin, or the site that wrote the current
    version), this site holding the deleted version (its
    ``synced_<site>`` is not older than the element's ``time``). ``[]`` unless
    ``settings["propagateDeletions"]``. ``among``: the ids to look at (default all of
    ``files``; an agent passes those its view knows are deleted)."""
    if not settings.get("propagateDeletions", DEFAULTS["propagateDeletions"]):
        return []
    synced_key = site_keys(site).synced
    out = []
    for i in files if among is None else among:
        el = files.get(i)
        if (
            el
            and el.get("deleted") is True
            and el.get("deleted_at", el.get("origin")) != site
            and _held(el, synced_key)
        ):
            out.append(i)
    return sorted(out)


def to_move(
    files: Mapping[str, Mapping[str, Any]],
    site: str,
    settings: Mapping[str, Any],
    among: Iterable[str] | None = None,
) -> list[tuple[str, str]]:
    """The renames at an origin to apply at ``site`` as moves, ``(old id, new id)``:
    among :func:`to_remove`, those recorded ``renamed_to`` a file element this site
    does not hold yet (``among`` as for :func:`to_remove`).

    >>> old = {"_id": "/a", "origin": "paris", "time": 5, "deleted": True,
    ...        "synced_tokyo": 5, "renamed_to": "/b"}
    >>> new = {"_id": "/b", "origin": "paris", "time": 6, "renamed_from": "/a"}
    >>> to_move({"/a": old, "/b": new}, "tokyo", {"propagateDeletions": True})
    [('/a', '/b')]
    """
    synced_key = site_keys(site).synced
    out = []
    for old_id in to_remove(files, site, settings, among):
        new_id = files[old_id].get("renamed_to")
        new = files.get(new_id) if isinstance(new_id, str) else None
        if new is not None and not new.get("deleted") and not _held(new, synced_key):
            out.append((old_id, new_id))
    return out


def move(
    site: Site,
    old_id: str,
    new_id: str,
    files: Mapping[str, Mapping[str, Any]],
    name: str,
    now: int,
) -> Outcome:
    """Apply a rename at the site named ``name``: move the copy of ``old_id`` to
    ``new_id`` when it is the old element's version, the new element records that same
    version (size, mtime) and nothing is at the new path. The outcome is ``MOVED``
    (recorded on the old element; the new one is recorded as any copy, by the cycle's
    transfer or the next scan) or ``STALE``: nothing moved, the file is then copied and
    the old copy trashed. Both ids pass the site's guard (:class:`.site.Refused`)."""
    old, new = files[old_id], files[new_id]
    origin = str(old.get("origin"))
    look = site.look(old_id)
    precision = site.precision_ns
    if (
        not look_matches(look, old, precision)
        or not look_matches(look, new, precision)
        or not site.move(old_id, new_id)
    ):
        return Outcome(old_id, origin, name, STALE, now)
    return Outcome(old_id, origin, name, MOVED, now, incoming=new_id)


def brake(
    ids: list[str], files: Mapping[str, Mapping[str, Any]], site: str, settings: Mapping[str, Any]
) -> str | None:
    """Why removing ``ids`` at ``site`` in one cycle is refused (more than ``maxDelete``
    % of the files the site holds, deleted ones included), or ``None``.

    >>> files = {f"/{i}": {"origin": "p", "time": 1, "synced_t": 1} for i in range(4)}
    >>> brake(["/0", "/1"], files, "t", {"maxDelete": 50}) is None
    True
    >>> print(brake(["/0", "/1", "/2"], files, "t", {"maxDelete": 50}))
    sync error: 3 of the 4 files held at t were deleted at their origin (75%), more than maxDelete (50%): none is removed; raise maxDelete for one cycle if these deletions are wanted
    """
    if not ids:
        return None
    limit = float(settings.get("maxDelete", DEFAULTS["maxDelete"]))
    synced_key = site_keys(site).synced
    held = sum(1 for el in files.values() if _held(el, synced_key))
    share = 100.0 * len(ids) / max(held, 1)
    if share <= limit:
        return None
    return (
        f"sync error: {len(ids)} of the {held} files held at {site} were deleted at their "
        f"origin ({share:.0f}%), more than maxDelete ({limit:g}%): none is removed; raise "
        f"maxDelete for one cycle if these deletions are wanted"
    )


def move_to_trash(
    site: Site, file_id: str, element: Mapping[str, Any], name: str, now: int
) -> Outcome:
    """Move the copy of ``file_id`` at the site named ``name`` into its quarantine when
    it is the element's version; the outcome says what happened (``TRASHED`` with
    where, relative to the root, or ``STALE`` when the copy is gone or changed: nothing
    is moved). The id passes the site's guard (:class:`.site.Refused`)."""
    look = site.look(file_id)
    origin = str(element.get("origin"))
    if not look_matches(look, element, site.precision_ns):
        return Outcome(file_id, origin, name, STALE, now)
    day = datetime.fromtimestamp(now / 1000, UTC).date()
    try:
        kept = site.quarantine(file_id, day, now)
    except FileNotFoundError:
        return Outcome(file_id, origin, name, STALE, now)
    return Outcome(file_id, origin, name, TRASHED, now, incoming=kept.lstrip("/"))


__all__ = ["brake", "move", "move_to_trash", "to_move", "to_remove"]
