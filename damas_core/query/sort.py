"""Sort specifications, in every shape damas-core clients send them, → one ``Sort``.

A :data:`~damas_core.query.ast.Sort` is a tuple of ``(dotted_key, direction)`` pairs,
direction ``1`` (ascending) or ``-1`` (descending). Accepted input:

- ``None`` (or an empty dict/list): no sort, ``()``;
- ``"key"`` or ``"-key"``;
- ``{"key": 1, "other": -1}`` (in the dict's order);
- ``[["key", -1], ["other", 1]]``, ``["key", "-other"]``, or a mix of both;
- the single pair ``["key", -1]`` (the MongoDB driver's shorthand; its second item
  is the number ``1`` or ``-1``, so it cannot be read as two keys).

Directions are ``1``, ``-1``, ``"asc"``, ``"desc"``, ``"ascending"`` or
``"descending"`` (any case). Anything else, an empty key part or a key given twice
raises :class:`~damas_core.errors.BadRequest`.

>>> normalize_sort("-time")
(('time', -1),)
>>> normalize_sort({"file_size": "desc", "_id": 1})
(('file_size', -1), ('_id', 1))
>>> normalize_sort([["a.b", 1], "-c"])
(('a.b', 1), ('c', -1))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from damas_core.errors import BadRequest
from damas_core.query.ast import Sort

_DIRECTIONS = {"asc": 1, "ascending": 1, "desc": -1, "descending": -1}


def _bad(what: str) -> NoReturn:
    raise BadRequest(f"sort error: {what}")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        _bad(f"a sort key must be a string, not {type(key).__name__}")
    if key == "" or "" in key.split("."):
        _bad(f"empty key part in sort key {key!r}")
    return key


def _direction(key: str, direction: Any) -> int:
    if isinstance(direction, int) and not isinstance(direction, bool) and direction in (1, -1):
        return direction
    if isinstance(direction, str) and direction.lower() in _DIRECTIONS:
        return _DIRECTIONS[direction.lower()]
    _bad(f"the direction of {key!r} must be 1, -1, 'asc' or 'desc', not {direction!r}")


def _signed(item: str) -> tuple[str, int]:
    if item.startswith("-"):
        return _key(item[1:]), -1
    return _key(item), 1


def _pair(item: Any) -> tuple[str, int]:
    if isinstance(item, str):
        return _signed(item)
    if isinstance(item, list | tuple) and len(item) == 2:
        key = _key(item[0])
        return key, _direction(key, item[1])
    _bad(f"a sort item must be a key or a [key, direction] pair, not {item!r}")


def normalize_sort(sort: Any) -> Sort:
    """The :data:`Sort` for any accepted sort specification (see the module docstring).

    >>> normalize_sort(None), normalize_sort(["time", -1])
    ((), (('time', -1),))
    """
    if sort is None:
        return ()
    if isinstance(sort, str):
        pairs = [_signed(sort)]
    elif isinstance(sort, Mapping):
        pairs = [(_key(k), _direction(k, v)) for k, v in sort.items()]
    elif isinstance(sort, list | tuple):
        if (
            len(sort) == 2
            and isinstance(sort[0], str)
            and isinstance(sort[1], int)
            and not isinstance(sort[1], bool)
        ):
            key = _key(sort[0])
            pairs = [(key, _direction(key, sort[1]))]
        else:
            pairs = [_pair(item) for item in sort]
    else:
        _bad(f"a sort must be a key, an object or a list, not {type(sort).__name__}")
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            _bad(f"sort key {key!r} is given twice")
        seen.add(key)
    return tuple(pairs)


__all__ = ["normalize_sort"]
