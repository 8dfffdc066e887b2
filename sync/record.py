"""What a cycle's transfers record on the file elements: a pure function of outcomes.

The agent runs rsync and looks at each copy afterwards; what it found about each
file is an :class:`Outcome`. :func:`record` turns outcomes into the patches written to
the tracker, reading nothing but the elements as the cycle saw them, so the rules of
what a copy records can be tested without rsync.

>>> files = {"/a": {"_id": "/a", "origin": "paris", "time": 5, "syncError_tokyo": 23}}
>>> record([Outcome("/a", "paris", "tokyo", COPIED, at=9)], files)
[{'_id': '/a', 'synced_tokyo': 5, 'syncLastAttempt_tokyo': 9, 'syncError_tokyo': None}]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .state import conflict_record, site_keys

#: the copy at the target is the element's version: recorded as synced there
COPIED = "copied"
#: rsync failed for this file (``code``: its exit code, 23 when not found)
FAILED = "failed"
#: an emission left a different copy alone at the target: that site's agent decides
LEFT = "left"
#: the source changed since it was scanned: the next scan gives a new version
STALE = "stale"
#: the copy here changed since its baseline: the incoming copy was kept beside it
CONFLICT = "conflict"
#: a rename at the origin was applied here: the copy moved to ``incoming`` (its new id)
MOVED = "moved"
#: a deletion at the origin was applied here: the copy moved to the quarantine
#: (``incoming``: where, relative to the root)
TRASHED = "trashed"


def left_reason(target: str) -> str:
    """Why an emission to ``target`` waits after rsync left a different copy there."""
    return f"a different copy exists at {target}; waits for its agent"


@dataclass(frozen=True)
class Outcome:
    """What a transfer found about one file copied from ``source`` to ``target``.

    ``status`` is one of :data:`COPIED`, :data:`FAILED`, :data:`LEFT`, :data:`STALE`,
    :data:`CONFLICT`, :data:`MOVED`, :data:`TRASHED`; ``at`` is when (ms). ``learned``: keys the copy taught an element
    published without them (``file_size``, ``file_mtime``); ``code``: rsync's exit code
    of a failure; ``incoming`` and ``local`` (size, mtime in ns): a conflict's incoming
    copy id (``None`` when it could not be fetched) and the local copy.
    """

    file_id: str
    source: str
    target: str
    status: str
    at: int = 0
    learned: Mapping[str, Any] = field(default_factory=dict)
    code: int = 0
    incoming: str | None = None
    local: tuple[int, int] | None = None


def record(
    outcomes: Iterable[Outcome], files: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The patches that record ``outcomes`` on their elements (``files``: the elements
    as the cycle saw them, by id), one per outcome, in order.

    - copied: ``synced_<target>`` = the element's ``time``, the attempt time, what the
      copy taught; the target's error, failure count and wait reason cleared;
    - failed: ``syncError_<target>`` = the code, one more failure in a row;
    - left: ``syncWait_<target>`` says why;
    - stale: only the attempt time;
    - conflict: ``conflict_<target>`` (:func:`.state.conflict_record`);
    - moved: ``synced_<target>`` removed from the old element;
    - trashed: ``trashed_<target>`` = where the copy went, ``synced_<target>`` removed
      (the site no longer holds it).

    >>> f = {"/a": {"_id": "/a", "time": 5, "syncFailures_lyon": 2}}
    >>> record([Outcome("/a", "paris", "lyon", FAILED, at=9, code=23)], f)
    [{'_id': '/a', 'syncError_lyon': 23, 'syncFailures_lyon': 3, 'syncLastAttempt_lyon': 9}]
    """
    patches = []
    for o in outcomes:
        el = files.get(o.file_id) or {}
        keys = site_keys(o.target)
        patch: dict[str, Any] = {"_id": o.file_id}
        if o.status == COPIED:
            patch.update(o.learned)
            patch[keys.synced] = el.get("time") or o.at
            patch[keys.attempt] = o.at
            for key in (keys.error, keys.failures, keys.wait):
                if key in el:  # cleared: this copy is good
                    patch[key] = None
        elif o.status == FAILED:
            patch[keys.error] = o.code
            patch[keys.failures] = (el.get(keys.failures) or 0) + 1
            patch[keys.attempt] = o.at
        elif o.status == LEFT:
            patch[keys.wait] = left_reason(o.target)
            patch[keys.attempt] = o.at
        elif o.status == STALE:
            patch[keys.attempt] = o.at
        elif o.status == CONFLICT:
            size, mtime = o.local or (0, 0)
            patch[keys.conflict] = conflict_record(
                o.at, o.source, o.incoming, size, mtime // 1_000_000
            )
            patch[keys.attempt] = o.at
        elif o.status == MOVED:
            patch[keys.synced] = None  # the old path is empty here now
            patch[keys.attempt] = o.at
        elif o.status == TRASHED:
            patch[keys.trashed] = o.incoming
            patch[keys.synced] = None
            patch[keys.attempt] = o.at
        else:
            raise ValueError(f"sync error: unknown outcome {o.status!r} for {o.file_id!r}")
        patches.append(patch)
    return patches


__all__ = [
    "CONFLICT",
    "COPIED",
    "FAILED",
    "LEFT",
    "MOVED",
    "STALE",
    "TRASHED",
    "Outcome",
    "left_reason",
    "record",
]
