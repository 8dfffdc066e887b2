"""Stop tracking files without touching them: ``damas untrack PATH``.

:func:`untrack` deletes file elements and their history children; the files stay on
disk at every site. Each agent that held an element when the change feed reported
its deletion leaves its file alone while the copy is that version (the view's
``gone``, docs/sync.md "Untracked files"); a changed copy is a new file.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> _ = t.publish({"_id": "/tmp/render.log", "origin": "paris", "comment": "scanned"})
>>> untrack(t, ["/tmp/render.log", "/nope"])
['/tmp/render.log']
>>> t.search("#parent:/tmp/render.log")
[]
"""

from __future__ import annotations

from collections.abc import Iterable

from damas_core.errors import BadRequest
from damas_core.query.ast import Eq
from damas_core.query.printer import to_text

from .tracker_api import TrackerAPI
from .volumes import read_files


def untrack(tracker: TrackerAPI, paths: Iterable[str]) -> list[str]:
    """Delete the file elements ``paths`` and their history children; returns the ids
    untracked (a path that is not a tracked file is left out). A path that is not a
    file id (``/…``) is a :class:`BadRequest`, and nothing is deleted."""
    ids = list(paths)
    for i in ids:
        if not isinstance(i, str) or not i.startswith("/"):
            raise BadRequest(
                f"untrack error: a file id is a path starting with '/', not {i!r}", op="untrack"
            )
    found = sorted(read_files(tracker, ids))
    for file_id in found:
        children = tracker.search_elements(to_text(Eq(("#parent",), file_id)))
        child_ids = [c["_id"] for c in children]
        # the file first: an agent never sees it tracked without its history
        tracker.delete([file_id, *child_ids])
    return found


__all__ = ["untrack"]
