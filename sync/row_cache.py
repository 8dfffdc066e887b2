"""Rows of files kept between pages: a row is made again only when its file changed.

A row (:func:`.status.row_of`) is a function of the file's element, the sites shown,
the global parameters and whether the file is in a bucket running now
(:func:`.status.in_flight`). A :class:`RowCache` keeps the last row made for each
file with the element it was made from, and gives it again while the element read
for the page is equal to that one, for the same sites and parameters. A file in
flight is not kept: its row is made each time. So a page shows exactly what
:func:`.status.row_of` would make of what it read, whatever was written in between,
by whom or through which backend; comparing an element costs a fraction of making
its row (about 0.2 µs against 8 µs for 3 sites: ``make bench``, dashboard).

>>> import damas_core
>>> from .status import Filters, page
>>> t = damas_core.open("memory://")
>>> _ = t.create({"_id": "v1", "name": "paris", "url": "file:///p/"})
>>> _ = t.publish({"_id": "/a", "origin": "paris", "comment": "c", "file_size": 3})
>>> rows = RowCache()
>>> first = page(t, Filters(), make_row=rows)["files"][0]
>>> page(t, Filters(), make_row=rows)["files"][0] is first  # nothing changed: the same row
True
>>> _ = t.update({"_id": "/a", "file_size": 4})
>>> page(t, Filters(), make_row=rows)["files"][0]["file_size"]
4

The rows given are shared between pages: read them, do not change them.
"""

from __future__ import annotations

import threading
from collections.abc import Container, Hashable, Iterable, Mapping
from typing import Any

from damas_core.elements import copied_size

from .status import row_of

#: rows kept at most: a few pages for each of many people
DEFAULT_SIZE = 20_000
#: bytes kept at most (the elements' JSON, and about :data:`ENTRY_COST` more a row), so
#: that files with large elements keep fewer rows, not more memory
DEFAULT_BUDGET = 64 * 2**20
ENTRY_COST = 512


class Kept:
    """At most ``size`` values costing at most ``budget`` bytes in all, by key, the
    oldest put going first (thread-safe; reading takes no lock).

    >>> kept = Kept(size=2, budget=100)
    >>> kept.put("a", 1, 10); kept.put("b", 2, 10); kept.put("c", 3, 10)
    >>> kept.get("a"), kept.get("c"), len(kept)
    (None, 3, 2)
    >>> kept.put("d", 4, 95); kept.get("c"), kept.get("d")
    (None, 4)
    >>> kept.put("e", 5, 101); kept.get("e")  # over the budget alone: not kept
    """

    def __init__(self, size: int = DEFAULT_SIZE, budget: int = DEFAULT_BUDGET) -> None:
        if size < 1 or budget < 1:
            raise ValueError("a cache keeps at least one value of at least one byte")
        self.size = size
        self.budget = budget
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[Any, int]] = {}
        self._cost = 0

    def get(self, key: Hashable) -> Any:
        """The value put under ``key``, or ``None``."""
        found = self._values.get(key)
        return None if found is None else found[0]

    def put(self, key: Hashable, value: Any, cost: int) -> None:
        """Keep ``value`` under ``key`` (``cost``: its bytes), as the newest."""
        with self._lock:
            values = self._values
            old = values.pop(key, None)
            if old is not None:
                self._cost -= old[1]
            if cost > self.budget:
                return
            values[key] = (value, cost)
            self._cost += cost
            while len(values) > self.size or self._cost > self.budget:
                self._cost -= values.pop(next(iter(values)))[1]

    def clear(self) -> None:
        with self._lock:
            self._values, self._cost = {}, 0

    def __len__(self) -> int:
        return len(self._values)


class RowCache:
    """A :func:`.status.row_of` that keeps its rows (thread-safe) in a :class:`Kept` of
    ``size`` rows and ``budget`` bytes."""

    def __init__(self, size: int = DEFAULT_SIZE, budget: int = DEFAULT_BUDGET) -> None:
        self._rows = Kept(size, budget)  # (file id, sites) -> (its element, its row)
        self._params: Mapping[str, Any] = {}  # a copy of the parameters the rows follow
        self._seen: Mapping[str, Any] | None = None  # the last ones given, equal to those

    def __call__(
        self,
        element: Mapping[str, Any],
        sites: Iterable[str],
        params: Mapping[str, Any],
        moving: Mapping[str, Container[str]],
    ) -> dict[str, Any]:
        """The row of ``element`` at ``sites``, as :func:`.status.row_of` makes it."""
        names = sites if isinstance(sites, tuple) else tuple(sites)
        file_id = element["_id"]
        if moving and any(file_id in ids for site, ids in moving.items() if site in names):
            return row_of(element, names, params, moving)  # in flight: made each time
        if params is not self._seen:
            if params != self._params:  # the states depend on them: every row is made again
                self._rows.clear()
                self._params = dict(params)
            self._seen = params
        key = (file_id, names)
        kept = self._rows.get(key)
        if kept is not None and kept[0] == element:
            return kept[1]
        row = row_of(element, names, params)
        cost = copied_size(element, ()) + ENTRY_COST
        self._rows.put(key, (element, row), cost)
        return row

    def __len__(self) -> int:
        return len(self._rows)


__all__ = ["DEFAULT_BUDGET", "DEFAULT_SIZE", "ENTRY_COST", "Kept", "RowCache"]
