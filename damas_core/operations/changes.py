"""changes: what changed in the store since a position of its change feed.

Every write that changes an element takes the next store-wide sequence number
(:meth:`damas_core.backends.base.Storage.changes`); a reader keeps the ``last_seq`` of
its last answer and asks again from there. See ``docs/changes.md``.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.create([{"_id": "/a"}, {"_id": "/b"}])
>>> _ = t.update({"_id": "/a", "n": 1})
>>> t.changes()
{'last_seq': 3, 'changes': [{'seq': 2, '_id': '/b', 'deleted': False}, {'seq': 3, '_id': '/a', 'deleted': False}]}
>>> t.changes(since=3)
{'last_seq': 3, 'changes': []}
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from damas_core.backends.base import Change
from damas_core.elements import any_reserved
from damas_core.errors import BadRequest
from damas_core.feed import MAX_WAIT
from damas_core.operations import crud
from damas_core.permissions import require

if TYPE_CHECKING:
    from damas_core.tracker import Session

#: The largest ``limit`` one call may ask for.
MAX_LIMIT = 10_000
#: The ``limit`` of a call that gives none.
DEFAULT_LIMIT = 1000


def _whole(value: Any, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise BadRequest(
            f"changes error: {name} must be a whole number {bound}, not {value!r}",
            op="changes",
            key=name,
        )
    return value


def check_arguments(
    since: Any, limit: Any, elements: Any, wait: Any
) -> tuple[int, int, bool, float]:
    """The arguments of :func:`changes`, checked: ``since`` a whole number >= 0,
    ``limit`` one from 1 to :data:`MAX_LIMIT`, ``elements`` a bool, ``wait`` seconds
    >= 0 (capped at :data:`~damas_core.feed.MAX_WAIT`). Raises ``BadRequest`` naming the
    argument.

    >>> check_arguments(0, 10, False, 90)
    (0, 10, False, 60.0)
    """
    since = _whole(since, "since", 0)
    limit = _whole(limit, "limit", 1, MAX_LIMIT)
    if not isinstance(elements, bool):
        raise BadRequest(
            f"changes error: elements must be true or false, not {elements!r}",
            op="changes",
            key="elements",
        )
    if (
        isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not math.isfinite(wait)
        or wait < 0
    ):
        raise BadRequest(
            f"changes error: wait must be a number of seconds >= 0, not {wait!r}",
            op="changes",
            key="wait",
        )
    return since, limit, elements, min(float(wait), MAX_WAIT)


def changes(
    session: Session,
    since: Any = 0,
    limit: Any = DEFAULT_LIMIT,
    *,
    elements: Any = False,
    wait: Any = 0.0,
) -> dict[str, Any]:
    """``{"last_seq": N, "changes": [{"seq", "_id", "deleted", "element"?}, …]}``: the
    latest change of each id after ``since``, in seq order, at most ``limit``.

    - Internal ids (settings, token revocations) and elements the session may not read
      are left out, but ``last_seq`` moves past them: a page may hold fewer than
      ``limit`` entries, even none; read on from ``last_seq``.
    - ``elements=True`` adds each live entry's current ``element`` as the session reads
      it (without its private keys); a tombstone has none. An element deleted between
      the feed read and the element read is left out: its tombstone comes later.
    - ``wait`` > 0 blocks until a visible change arrives or ``wait`` seconds pass.
    - Each page is filtered with the session renewed after it was read
      (:meth:`~damas_core.tracker.Session.renewed`): the account's class as it stands
      then, also after a wait; a deleted or disabled account (or a token that no longer
      holds) raises ``Unauthorized``.
    - ``{"last_seq": N, "changes": [], "reset": True}`` when ``since`` is below the
      feed's horizon (tombstones were dropped after it) or above the store's position
      (another store, or one restored from an older copy): the reader must forget what
      it knows, read every element again, and go on from ``last_seq``.
    """
    require(session.user_class, "read", session.username)
    since, limit, elements, wait = check_arguments(since, limit, elements, wait)
    deadline = time.monotonic() + wait
    while True:
        storage = session.storage
        last, entries = storage.changes(since, limit)
        # The horizon is read after the page: a compaction before the read shows here.
        if since < storage.horizon() or since > last:
            return {"last_seq": storage.last_seq(), "changes": [], "reset": True}
        # The account may have changed since the session was made (or while this
        # waited): filter with the session as it stands now, renewed after the page was
        # read (Unauthorized when the account may no longer read).
        session = session.renewed()
        visible = visible_entries(session, entries)
        remaining = deadline - time.monotonic()
        if visible or remaining <= 0:
            break
        since = last
        if len(entries) < limit:  # caught up: wait for the next write
            session.tracker.feed.wait(last, remaining)
    if elements:
        return {"last_seq": last, "changes": with_elements(session, visible)}
    found = [{"seq": seq, "_id": id, "deleted": deleted} for seq, id, deleted in visible]
    return {"last_seq": last, "changes": found}


def visible_entries(session: Session, entries: list[Change]) -> list[Change]:
    """The feed entries ``session`` may see: internal ids left out."""
    if not any_reserved([id for _, id, _ in entries]):  # the usual page, checked in C
        return entries
    return [c for c in entries if not session.hidden(c[1])]


def with_elements(session: Session, entries: list[Change]) -> list[dict[str, Any]]:
    """The change dicts of ``entries`` with each live one's ``element`` read through the
    read path (one read for all); those whose element is gone since are left out."""
    live = [id for _, id, deleted in entries if not deleted]
    found = crud.read(session, live) if live else []
    if len(live) == len(entries):  # no tombstone: the usual page, in one pass
        return [
            {"seq": seq, "_id": id, "deleted": False, "element": element}
            for (seq, id, _), element in zip(entries, found)
            if element is not None
        ]
    read = iter(found)
    out = []
    for seq, id, deleted in entries:
        if deleted:
            out.append({"seq": seq, "_id": id, "deleted": True})
        elif (element := next(read)) is not None:
            out.append({"seq": seq, "_id": id, "deleted": False, "element": element})
    return out
