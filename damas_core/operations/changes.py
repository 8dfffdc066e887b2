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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

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
#: The most bytes one answer holds by default, as JSON (``changes_max_bytes`` of
#: :func:`damas_core.open`): an answer stops early, with ``"more": True``, rather than
#: grow past it (but always holds at least one entry).
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: Elements read at once, at first, while an answer is filled (then as many as the
#: sizes seen so far say fit, up to :data:`MAX_READ`).
FIRST_READ = 32
MAX_READ = 1024
# What the answer's envelope costs beyond its entries: {"last_seq":N,"changes":[],"more":true}
_ENVELOPE = 64


def check_max_bytes(value: Any) -> int:
    """``changes_max_bytes``, checked: a whole number of bytes, at least 1024.

    >>> check_max_bytes(8 << 20)
    8388608
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise BadRequest(
            f"changes_max_bytes must be a whole number of bytes >= 1024, not {value!r}",
            key="changes_max_bytes",
        )
    return value


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
    - At most ``tracker.changes_max_bytes`` bytes of JSON (8 MB by default): an answer
      that would grow past it stops after the entry that reached it, says
      ``"more": True``, and its ``last_seq`` is that entry's seq: read on from there.
      An entry larger than the bound comes alone.
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
    runs = _runs_with_elements(session, visible) if elements else _runs(visible)
    found, cut = bounded(runs, session.tracker.changes_max_bytes - _ENVELOPE)
    if not cut:
        return {"last_seq": last, "changes": found}
    return {"last_seq": found[-1]["seq"], "changes": found, "more": True}


Run = list[dict[str, Any]]


def visible_entries(session: Session, entries: list[Change]) -> list[Change]:
    """The feed entries ``session`` may see: internal ids left out."""
    if not any_reserved([id for _, id, _ in entries]):  # the usual page, checked in C
        return entries
    return [c for c in entries if not session.hidden(c[1])]


def bounded(runs: Iterator[tuple[Run, int]], budget: int) -> tuple[Run, bool]:
    """The change dicts of ``runs`` (``(dicts, their size as a JSON array)`` pairs,
    made as they are asked for) while their JSON holds at most ``budget`` bytes (the
    first dict always), and whether the budget cut them short. Only the run that
    crosses the budget is measured entry by entry.

    >>> bounded(iter([([{"n": 1}, {"n": 2}], 17), ([{"n": 3}], 9)]), 20)
    ([{'n': 1}, {'n': 2}], True)
    """
    out: Run = []
    total = 0
    for run, size in runs:
        # a run's brackets stand for the commas around it
        if total + size <= budget:
            out += run
            total += size
            continue
        for change in run:
            size = len(orjson.dumps(change)) + 1
            if out and total + size > budget:
                return out, True
            out.append(change)
            total += size
    return out, False


def _runs(entries: list[Change]) -> Iterator[tuple[Run, int]]:
    """The change dicts of ``entries`` (without elements), a run of :data:`MAX_READ`
    at a time, each with its JSON size."""
    for start in range(0, len(entries), MAX_READ):
        run = [
            {"seq": seq, "_id": id, "deleted": deleted}
            for seq, id, deleted in entries[start : start + MAX_READ]
        ]
        yield run, len(orjson.dumps(run))


def _runs_with_elements(session: Session, entries: list[Change]) -> Iterator[tuple[Run, int]]:
    """The change dicts of ``entries`` with each live one's ``element`` read through
    the read path, a run at a time, each with its JSON size: :data:`FIRST_READ`
    entries first, then as many as the sizes seen so far say fit in what is left of the
    bound, at most :data:`MAX_READ` (so an answer its size stops never read much more
    than it holds). An entry whose element is gone since is left out: its tombstone
    comes later in the feed."""
    start, count, total, made = 0, FIRST_READ, 0, 0
    budget = session.tracker.changes_max_bytes
    while start < len(entries):
        part = entries[start : start + count]
        start += len(part)
        run = with_elements(session, part)
        size = len(orjson.dumps(run))
        yield run, size
        total, made = total + size, made + len(part)
        count = max(1, min(MAX_READ, (budget - total) * made // max(total, 1)))


def with_elements(session: Session, entries: list[Change]) -> Run:
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
