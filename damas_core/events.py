"""Operation events: hooks before writes (may veto or replace) and after (observe).

Every writing operation runs them (docs/guide.md, "Events", has the table):
create, publish and comment run ``pre-create`` then ``create``; update runs
``pre-update`` then ``update``; upsert runs the create events for the elements it
creates and the update events for those it changes; version runs ``pre-update`` (the
head) and ``pre-create`` (the archived copy), then ``update`` and ``create``; lock and
unlock run ``pre-update`` then ``update``; delete runs ``pre-delete`` then ``delete``.

>>> ev = Events()
>>> ev.on("pre-create", lambda session, items: [dict(i, tagged=True) for i in items])
>>> ev.before("create", None, [{"_id": "/a"}])
[{'_id': '/a', 'tagged': True}]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from damas_core.errors import BadRequest

log = logging.getLogger(__name__)

#: The kinds of write an event is about; each has a ``pre-<kind>`` hook and a ``<kind>``
#: event.
KINDS = ("create", "update", "delete")
#: Every event name :meth:`Events.on` accepts (extend it with the events of new features).
NAMES: tuple[str, ...] = (*(f"pre-{k}" for k in KINDS), *KINDS, "change")


class Events:
    """Callbacks by event name.

    ``pre-<op>`` callbacks receive ``(session, items)`` before anything is written; they
    may raise (the operation fails with that error and nothing is written) or return a
    replacement list of items. ``<op>`` callbacks receive ``(session, results)`` after the
    write; their errors are logged, never undo the write.

    ``change`` callbacks receive each committed change of the store's feed, one call
    per change: ``{"seq": N, "_id": id, "deleted": bool}``, whatever operation made it
    (see :meth:`damas_core.feed.Feed.deliver_to`); their errors are logged too.
    """

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[..., Any]]] = {n: [] for n in NAMES}

    def on(self, name: str, callback: Callable[..., Any]) -> None:
        """Register ``callback`` for event ``name`` (one of :data:`NAMES`)."""
        if name not in self._callbacks:
            raise BadRequest(f"unknown event {name!r} (known: {', '.join(NAMES)})")
        self._callbacks[name].append(callback)

    def wants(self, name: str) -> bool:
        """True when a callback is registered for ``name`` (so results that cost a read
        are built only for someone)."""
        return bool(self._callbacks.get(name))

    def changed(self, change: dict[str, Any]) -> None:
        """Run the ``change`` callbacks with one change; a failing callback is logged."""
        for cb in self._callbacks["change"]:
            try:
                cb(change)
            except Exception:
                log.exception("change event callback %r failed", cb)

    def before(self, op: str, session: Any, items: list[Any]) -> list[Any]:
        """Run the ``pre-<op>`` callbacks in order; each may replace the items."""
        for cb in self._callbacks.get(f"pre-{op}", ()):
            replaced = cb(session, items)
            if replaced is not None:
                if not isinstance(replaced, list) or len(replaced) != len(items):
                    raise BadRequest(
                        f"{op} error: a pre-{op} hook must return a list of {len(items)} items"
                    )
                items = replaced
        return items

    def after(self, op: str, session: Any, results: list[Any]) -> None:
        """Run the ``<op>`` callbacks; a failing callback is logged and skipped."""
        for cb in self._callbacks.get(op, ()):
            try:
                cb(session, results)
            except Exception:
                log.exception("%s event callback %r failed", op, cb)
