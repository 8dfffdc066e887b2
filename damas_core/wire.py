"""The two answers whose wire shape differs from the library's result, packed by the
HTTP layer and unpacked by the client, each pair written once here.

- ``publish``: the library gives one slot per input item, ``None`` where the file was
  already tracked, else the file element (or ``(file, history child)`` with
  ``with_history``). The wire answer is the file slots, then one history child per
  created file, in the same order.
- ``comment``: the library gives one result per input item, a list where the item's
  ``#parent`` is a list. The wire answer is the flat list of those results.

Both unpackings take one pass over the answer.

>>> pairs = [({"_id": "/a"}, {"#parent": "/a"}), None]
>>> pack_published(pairs)
[{'_id': '/a'}, None, {'#parent': '/a'}]
>>> unpack_published(pack_published(pairs)) == pairs
True
>>> items = [{"#parent": ["/a", "/b"], "comment": "ok"}, {"#parent": "/c", "comment": "x"}]
>>> unpack_comments(pack_comments([["c1", None], "c2"]), items)
[['c1', None], 'c2']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from damas_core.errors import StorageError

Pair = tuple[dict[str, Any], dict[str, Any]]


def pack_published(pairs: Sequence[Pair | None]) -> list[Any]:
    """The wire answer of a publish: the file slots, then the created files' children."""
    files = [None if p is None else p[0] for p in pairs]
    return files + [p[1] for p in pairs if p is not None]


def unpack_published(payload: Sequence[Any]) -> list[Pair | None]:
    """The inverse of :func:`pack_published`: one ``(file, child)`` or ``None`` per slot.

    The slots end where the slots seen so far plus their created files' children make
    the whole answer; an answer with no such place is not a publish answer
    (:class:`~damas_core.errors.StorageError`).
    """
    total = len(payload)
    slots = created = 0
    while slots + created < total:
        if payload[slots] is not None:
            created += 1
        slots += 1
    if slots + created != total:
        raise StorageError(
            f"publish error: the server's answer ({total} items) is not file slots "
            "followed by their history children",
            op="publish",
        )
    children = iter(payload[slots:])
    return [None if f is None else (f, next(children)) for f in payload[:slots]]


def pack_comments(made: Any) -> list[Any]:
    """The wire answer of a comment: the results of every item, flattened."""
    flat: list[Any] = []
    for item in made if isinstance(made, list) else [made]:
        if isinstance(item, list):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def unpack_comments(flat: Sequence[Any], elements: Any) -> Any:
    """The inverse of :func:`pack_comments` for the request ``elements``: a list per
    item whose ``#parent`` is a list, ``None`` past the end of ``flat`` (a 404 answer
    carries no results)."""
    items = elements if isinstance(elements, list | tuple) else [elements]
    results = iter(flat)
    out: list[Any] = []
    for e in items:
        parents = e.get("#parent") if isinstance(e, dict) else None
        if isinstance(parents, list):
            out.append([next(results, None) for _ in parents])
        else:
            out.append(next(results, None))
    return out if isinstance(elements, list | tuple) else out[0]


__all__ = ["pack_comments", "pack_published", "unpack_comments", "unpack_published"]
