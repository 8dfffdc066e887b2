"""Moving elements between stores, and in and out of JSON Lines files.

Everything goes through the :class:`~damas_core.backends.base.Storage` API, so any
backend can be the source or the destination, and elements travel exactly as stored
(password hashes stay hashes, ``time`` and ``author`` are kept).

- :func:`copy_store` copies every element of one store into another, in batches. An
  element already at the destination with the same content is skipped, so running a
  copy again after an interruption resumes it; an element there with *different*
  content is a conflict, reported and left alone unless ``overwrite=True``. Each batch
  is written in one destination transaction and read back to verify it.
- :func:`export_lines` writes a store as JSON Lines, one element per line.
- :func:`read_lines` validates a whole JSON Lines input before anything is written;
  :func:`import_elements` then stores it like a copy.

>>> from damas_core.backends.memory import MemoryStorage
>>> src, dst = MemoryStorage(), MemoryStorage()
>>> src.insert_many([{"_id": "/a"}, {"_id": "/b", "n": 1}])
[True, True]
>>> report = copy_store(src, dst)
>>> (report.inserted, report.ok, [e["_id"] for e in dst.scan()])
(2, True, ['/a', '/b'])
>>> copy_store(src, dst).skipped  # a second run finds everything there already
2
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, Any

import orjson

from damas_core.backends.base import Element, Patch, Storage
from damas_core.errors import BadRequest
from damas_core.query.ast import All

DEFAULT_BATCH_SIZE = 1000
# How many bad lines an import error lists before "and N more".
MAX_REPORTED_ERRORS = 20


@dataclass
class TransferReport:
    """What a copy or an import did, and whether its final check passed.

    ``verified`` counts the elements read back from the destination with the source's
    content after their batch was written. ``source_count`` is the source counted
    again at the end of a copy (``None`` for an import).
    """

    read: int = 0
    inserted: int = 0
    skipped: int = 0
    overwritten: int = 0
    verified: int = 0
    conflicts: list[str] = field(default_factory=list)
    source_count: int | None = None

    @property
    def ok(self) -> bool:
        """No conflict, every element read is at the destination, and the source count
        matches: ``source count == destination count of the copied ids``."""
        counted = self.read if self.source_count is None else self.source_count
        return not self.conflicts and self.verified == self.read == counted

    def summary(self) -> str:
        """One line for people: what happened and the count check."""
        check = "ok" if self.ok else "FAILED"
        counted = self.read if self.source_count is None else self.source_count
        return (
            f"{self.read} elements read: {self.inserted} inserted, {self.skipped} already "
            f"there, {self.overwritten} overwritten, {len(self.conflicts)} conflicts; "
            f"count check {check}: source {counted}, at destination {self.verified}"
        )


def same_content(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (``1 == 1.0``) but ``true`` is not ``1``.

    >>> same_content({"a": [1, True]}, {"a": [1.0, True]}), same_content(True, 1)
    (True, False)
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_content(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same_content, a, b))
    if isinstance(a, int | float):
        return isinstance(b, int | float) and a == b
    return type(a) is type(b) and a == b


def _batches(elements: Iterable[Element], size: int) -> Iterator[list[Element]]:
    it = iter(elements)
    while batch := list(islice(it, size)):
        yield batch


def _replacement(element: Element, current: Element) -> Patch:
    """The patch that turns ``current`` into ``element``."""
    return Patch(
        element["_id"],
        set={k: v for k, v in element.items() if k != "_id"},
        unset=tuple(k for k in current if k not in element),
    )


def import_elements(
    elements: Iterable[Element],
    dst: Storage,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TransferReport:
    """Store ``elements`` (unique ``_id``\\ s) into ``dst``, batch by batch.

    Each batch is one destination transaction: absent elements are inserted, identical
    ones skipped, different ones reported in ``conflicts`` (or replaced with
    ``overwrite``). The batch is then read back to count ``verified``. ``progress`` is
    called with the number of elements of each finished batch.
    """
    if batch_size < 1:
        raise BadRequest(f"copy error: the batch size must be at least 1, not {batch_size}")
    report = TransferReport()
    for batch in _batches(elements, batch_size):
        ids = [e["_id"] for e in batch]
        report.read += len(batch)
        with dst.transaction():
            current = dst.get_many(ids)
            fresh: list[Element] = []
            patches: list[Patch] = []
            for element, there in zip(batch, current):
                if there is None:
                    fresh.append(element)
                elif same_content(element, there):
                    report.skipped += 1
                elif overwrite:
                    patches.append(_replacement(element, there))
                else:
                    report.conflicts.append(element["_id"])
            report.inserted += sum(dst.insert_many(fresh)) if fresh else 0
            report.overwritten += sum(dst.patch_many(patches)) if patches else 0
        stored = dst.get_many(ids)
        report.verified += sum(
            1
            for element, there in zip(batch, stored)
            if there is not None and same_content(element, there)
        )
        if progress is not None:
            progress(len(batch))
    return report


def copy_store(
    src: Storage,
    dst: Storage,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TransferReport:
    """Copy every element of ``src`` into ``dst``; see :func:`import_elements`.

    The report's ``ok`` is the count check: the source, counted again at the end,
    holds as many elements as were found at the destination with the same content.
    """
    report = import_elements(
        src.scan(), dst, batch_size=batch_size, overwrite=overwrite, progress=progress
    )
    report.source_count = src.count(All())
    return report


def export_lines(
    src: Storage, out: IO[bytes], *, progress: Callable[[int], None] | None = None
) -> int:
    """Write every element of ``src`` to ``out`` as JSON Lines, in ``_id`` order;
    returns how many were written.

    >>> import io
    >>> from damas_core.backends.memory import MemoryStorage
    >>> store, out = MemoryStorage(), io.BytesIO()
    >>> store.insert_many([{"_id": "/a", "n": 1}])
    [True]
    >>> export_lines(store, out), out.getvalue()
    (1, b'{"_id":"/a","n":1}\\n')
    """
    written = 0
    for batch in _batches(src.scan(), DEFAULT_BATCH_SIZE):
        out.write(b"".join(orjson.dumps(e) + b"\n" for e in batch))
        written += len(batch)
        if progress is not None:
            progress(len(batch))
    return written


def read_lines(lines: Iterable[bytes | str]) -> list[Element]:
    """Parse and validate a whole JSON Lines input; every element or an error.

    Blank lines are ignored. Each other line must be a JSON object with a non-empty
    string ``_id`` not seen on an earlier line. A bad input raises ``BadRequest``
    listing the bad lines by number (the first :data:`MAX_REPORTED_ERRORS`), so an
    import can refuse it before writing anything.

    >>> read_lines([b'{"_id": "/a"}', b'', b'[1]'])
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: import error: 1 bad line, nothing imported: line 3: not a JSON object
    """
    elements: list[Element] = []
    first_line: dict[str, int] = {}
    errors: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            element = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            errors.append(f"line {number}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(element, dict):
            errors.append(f"line {number}: not a JSON object")
            continue
        id_ = element.get("_id")
        if not isinstance(id_, str) or not id_:
            errors.append(f"line {number}: _id must be a non-empty string, not {id_!r}")
            continue
        if id_ in first_line:
            errors.append(f"line {number}: _id {id_!r} already on line {first_line[id_]}")
            continue
        first_line[id_] = number
        elements.append(element)
    if errors:
        more = len(errors) - MAX_REPORTED_ERRORS
        listed = "; ".join(errors[:MAX_REPORTED_ERRORS]) + (
            f"; and {more} more" if more > 0 else ""
        )
        noun = "line" if len(errors) == 1 else "lines"
        raise BadRequest(f"import error: {len(errors)} bad {noun}, nothing imported: {listed}")
    return elements


def import_lines(
    lines: Iterable[bytes | str],
    dst: Storage,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TransferReport:
    """Validate all of ``lines`` (:func:`read_lines`), then store them in ``dst``."""
    elements = read_lines(lines)
    return import_elements(
        elements, dst, batch_size=batch_size, overwrite=overwrite, progress=progress
    )


def conflicts_text(ids: Sequence[str], limit: int = 20) -> str:
    """The conflicting ids for a message, the first ``limit`` of them."""
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "TransferReport",
    "conflicts_text",
    "copy_store",
    "export_lines",
    "import_elements",
    "import_lines",
    "read_lines",
    "same_content",
]
